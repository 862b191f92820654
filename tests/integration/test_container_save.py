"""--container-save=PATH as pyxis has it: the container's state, written as squashfs with the user's rights when the
step ends, runs again as an image."""

from __future__ import annotations

import hashlib

import pytest

from tests.integration.plugin_helpers import NO_MPI, srun

pytestmark = pytest.mark.integration

BUSYBOX = "127.0.0.1:5000/hpcctl/busybox:latest"


@pytest.fixture(scope="module")
def work(sandbox):
    return sandbox.workdir()


def test_a_saved_container_runs_again_with_what_the_step_changed(sandbox, work):
    saved = work / "state.sqsh"
    first = srun(sandbox, "-N2", "-n2", f"--container-image={BUSYBOX}", NO_MPI, "--container-save=state.sqsh",
                 "sh", "-c", "echo changed-in-step > /marker", cwd=work)
    assert first.returncode == 0, first.stderr
    assert saved.stat().st_uid == int(sandbox.run(["id", "-u", sandbox.user]).stdout)  # written by the user
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    again = srun(sandbox, f"--container-image={saved}", NO_MPI, "sh", "-c",
                 "cat /marker; test -e /proc/self && ls /dev | grep -c null", cwd=work)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["changed-in-step", "1"]  # the mounts are the new step's, not saved ones
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest  # running it changes nothing


def test_a_directory_target_is_refused_in_one_line(sandbox, work):
    r = srun(sandbox, f"--container-image={BUSYBOX}", NO_MPI, "--container-save=states/", "true", cwd=work)
    assert r.returncode != 0 and "is a directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_target_the_user_cannot_write_stays_unwritten(sandbox, work):
    r = srun(sandbox, f"--container-image={BUSYBOX}", NO_MPI, "--container-save=/root/stolen.sqsh", "true",
             cwd=work)
    assert r.returncode == 0, r.stderr  # the step itself ran
    assert not sandbox.run(["test", "-e", "/root/stolen.sqsh"], check=False).returncode == 0
