"""The epilog removes a job's step pins only from a directory the job's user owns and keeps private."""

import os

from hpcctl.plugin.epilog import remove_pins


def test_removes_only_this_jobs_pins(tmp_path):
    pins = tmp_path / f"pins-{os.getuid()}"
    pins.mkdir(mode=0o700)
    (pins / "7").write_text("img img@sha256:...\n")
    (pins / "8").write_text("img img@sha256:...\n")
    remove_pins(7, os.getuid(), str(tmp_path / "pins-{uid}"))
    assert sorted(p.name for p in pins.iterdir()) == ["8"]


def test_leaves_a_foreign_or_shared_directory_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "7").write_text("x")
    remove_pins(7, os.getuid(), str(shared))
    link = tmp_path / "link"
    link.symlink_to(shared)
    remove_pins(7, os.getuid(), str(link))
    remove_pins(7, os.getuid() + 1, str(shared))
    assert (shared / "7").exists()


def test_missing_directory_is_fine(tmp_path):
    remove_pins(7, os.getuid(), str(tmp_path / "nothing-{uid}"))
