"""`dockerd://IMAGE` from a real Docker daemon (Debian's docker.io), started for this module on its own socket,
data root and containerd, so the machine's own Docker (if any) is left alone."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from dockerd_helpers import running_dockerd
from image_site import ImageSite, listing

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def docker_host(sandbox, tmp_path_factory):
    root = tmp_path_factory.mktemp("dockerd")
    with running_dockerd(root, f"unix://{root}/docker.sock") as host:
        yield host


def test_an_image_of_the_local_docker_daemon(sandbox, docker_host):
    name = f"{sandbox.registry}/hpcctl/busybox:latest"  # loopback registries are plain HTTP for Docker by default
    docker = ["docker", "--host", docker_host]
    subprocess.run([*docker, "pull", "-q", name], check=True, capture_output=True, timeout=120)
    image_id = subprocess.run([*docker, "image", "inspect", "--format", "{{.Id}}", name], check=True,
                              capture_output=True, text=True).stdout.strip()
    site = ImageSite()
    env = {**os.environ, "DOCKER_HOST": docker_host}

    def hpcctl(*args):
        return subprocess.run(site.cmd(*args), capture_output=True, text=True, env=env, timeout=120)

    pulled = hpcctl("pull", "--json", f"dockerd://{name}")
    assert pulled.returncode == 0, pulled.stderr
    image = json.loads(pulled.stdout)
    assert (image["digest"], image["reference"]) == (image_id, f"dockerd://{name}")
    assert "squashfs-root/bin/busybox" in listing(image["path"])
    assert "HPCCTL_TEST_IMAGE=busybox" in image["config"]["Env"]
    assert hpcctl("resolve", f"dockerd://{name}").stdout.strip() == f"dockerd://{image_id}"
    assert json.loads(hpcctl("pull", "--json", f"dockerd://{name}").stdout)["path"] == image["path"]
    missing = hpcctl("pull", "dockerd://hpcctl/not-there:1")
    assert missing.returncode == 1 and missing.stderr == (
        "hpcctl: error: image hpcctl/not-there:1 is not in the local Docker daemon (docker pull or docker build it "
        "first)\n")
