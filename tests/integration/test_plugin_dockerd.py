"""`--container-image=dockerd://IMAGE`: the node's Docker daemon, as enroot/pyxis take it (issue 12), for users the
daemon's socket lets in; one clear line where no daemon runs or the user may not use it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.dockerd_helpers import running_dockerd
from tests.integration.plugin_helpers import NO_MPI, srun

pytestmark = pytest.mark.integration

SOCKET = Path("/var/run/docker.sock")


@pytest.fixture(scope="module")
def work(sandbox):
    return sandbox.workdir()


def test_without_a_daemon_the_step_is_refused_in_one_line(sandbox, work):
    if SOCKET.exists():
        pytest.fail(f"{SOCKET} exists: stop the machine's Docker daemon to run the plugin's dockerd tests")
    r = srun(sandbox, "--container-image=dockerd://busybox:latest", NO_MPI, "true", cwd=work)
    assert r.returncode != 0
    assert "no Docker daemon runs on this node" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def daemon(sandbox, tmp_path_factory):
    """dockerd on the default socket, its socket group the sandbox user's primary group."""
    group = subprocess.run(["id", "-gn", sandbox.user], capture_output=True, text=True, check=True).stdout.strip()
    with running_dockerd(tmp_path_factory.mktemp("dockerd-default"), f"unix://{SOCKET}", group):
        yield


def test_an_image_of_the_nodes_docker_daemon(sandbox, work, daemon):
    source = f"{sandbox.registry}/hpcctl/busybox:latest"
    subprocess.run(["docker", "pull", "-q", source], check=True, capture_output=True, timeout=120)
    subprocess.run(["docker", "tag", source, "hpcctl-dockerd-test:v1"], check=True, capture_output=True)
    r = srun(sandbox, "-N2", "-n2", "--container-image=dockerd://hpcctl-dockerd-test:v1", NO_MPI, "sh", "-c",
             "echo $HPCCTL_TEST_IMAGE; id -un", cwd=work, timeout=180)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted(["busybox", sandbox.user] * 2)


def test_a_user_the_daemon_does_not_let_in_is_refused(sandbox, work, daemon):
    os.chown(SOCKET, 0, 0)
    r = srun(sandbox, "--container-image=dockerd://hpcctl-dockerd-test:v1", NO_MPI, "true", cwd=work)
    assert r.returncode != 0 and "may not use the Docker daemon" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
