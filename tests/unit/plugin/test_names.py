"""What the job epilog removes: the job's named containers and identity files on the node."""

import os

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
