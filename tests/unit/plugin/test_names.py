"""Named containers on the node: what the job epilog removes, which holder runs, unnamed containers as JOBID.STEPID."""

import os

import pytest

from hpcctl.container.build import Image
from hpcctl.errors import HpcctlError
from hpcctl.plugin import names
from hpcctl.site.config import load_site


def test_remove_job_is_done_once_when_two_epilogs_race(tmp_path, monkeypatch):
    site = load_site("site-configs/sandbox.yaml")
    monkeypatch.setattr(names, "job_dir", lambda _site, job_id: str(tmp_path / "containers" / job_id))
    for node in ("n1", "n2"):
        os.makedirs(tmp_path / "containers" / "7" / node / "identity-2001-x")
        (tmp_path / "containers" / "7" / node / "identity-2001-x" / "passwd").write_text("u:x:1:1::/:/bin/sh\n")
    assert names.remove_job(site, "7") is True
    assert names.remove_job(site, "7") is False  # the other node's epilog: nothing left, no error
    assert os.listdir(tmp_path / "containers") == []


def _start_time(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[19]


def test_running_is_the_recorded_process_only_while_it_lives(tmp_path):
    me = os.getpid()
    (tmp_path / "holder").write_text(f"{me} {_start_time(me)}\n")
    assert names.running(str(tmp_path)) == {"pid": me, "start": _start_time(me)}
    (tmp_path / "holder").write_text(f"{me} 1\n")  # the pid was reused by another process
    assert names.running(str(tmp_path)) is None
    (tmp_path / "holder").write_text("not a holder\n")
    assert names.running(str(tmp_path)) is None
    assert names.running(str(tmp_path / "never-ran")) is None


def _image():
    return Image(path="/cache/img.sqsh", reference="reg/img@sha256:" + "0" * 64)


def test_unnamed_container_is_found_as_jobid_stepid_only_while_it_runs(tmp_path, monkeypatch):
    site = load_site("site-configs/sandbox.yaml")
    monkeypatch.setattr(names, "job_dir", lambda _site, job_id: str(tmp_path / job_id))
    directory = names.unnamed(site, "7", "3", "n1", 2001, _image())
    assert directory == str(tmp_path / "7" / "n1" / "2001-7.3")
    me = os.getpid()
    (tmp_path / "7" / "n1" / "2001-7.3" / "holder").write_text(f"{me} {_start_time(me)}\n")
    monkeypatch.setattr(names, "_tasks_inside", lambda _pid: True)
    assert names.find(site, "7", "n1", 2001, "7.3", "exec").image.path == "/cache/img.sqsh"
    (tmp_path / "7" / "n1" / "2001-7.3" / "holder").write_text(f"{me} 1\n")  # its step ended
    found = names.find(site, "7", "n1", 2001, "7.3", "auto")
    assert found.image is None and not os.path.exists(directory)


def test_exec_needs_a_running_container(tmp_path, monkeypatch):
    site = load_site("site-configs/sandbox.yaml")
    monkeypatch.setattr(names, "job_dir", lambda _site, job_id: str(tmp_path / job_id))
    names.remember(names.Named(str(tmp_path / "7" / "n1" / "2001-kept"), None), _image())
    with pytest.raises(HpcctlError, match="'kept' is not running in this job on n1"):
        names.find(site, "7", "n1", 2001, "kept", "exec")
    assert names.find(site, "7", "n1", 2001, "kept", "no_exec").image.path == "/cache/img.sqsh"


def test_a_named_container_of_a_shared_store_image_keeps_the_owner_that_opens_it(tmp_path, monkeypatch):
    """A later step of the container reopens the image from its record: with the store owner's rights, as the first."""
    site = load_site("site-configs/sandbox.yaml")
    monkeypatch.setattr(names, "job_dir", lambda _site, job_id: str(tmp_path / job_id))
    image = Image(path="/shared/images/abc.sqsh", reference="r@sha256:abc", hold="/cache/locks/abc.use",
                  open_as=(2900, 995))
    names.remember(names.find(site, "7", "n1", 2001, "c", "auto"), image)
    assert names.find(site, "7", "n1", 2001, "c", "auto").image == image
