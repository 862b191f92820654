"""Single-flight pulls and crash safety of the node cache, against the sandbox registry."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from image_layers import e, push_to_sandbox
from image_site import ImageSite, listing

pytestmark = pytest.mark.integration
REGISTRY_LOG = Path("/var/log/hpcctl-sandbox/registry.log")


def blob_gets(digests: list[str], since: int) -> int:
    with open(REGISTRY_LOG, "rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    return sum(1 for line in text.splitlines()
               if line.startswith("127.0.0.1 - -") and "GET /v2/" in line
               and any(f"/blobs/{d} " in line for d in digests))


def test_eight_concurrent_pulls_download_once_and_all_succeed(sandbox, tmp_path):
    site = ImageSite()
    repo, tag = "hpcctl-test/single-flight", uuid.uuid4().hex[:12]
    layers = [[e("bin", "dir"), e("bin/tool", data=os.urandom(2 << 20))],
              [e("etc", "dir"), e("etc/id", data=tag.encode())]]
    push_to_sandbox(sandbox.registry, repo, tag, layers, tmp_path)
    ref = f"{sandbox.registry}/{repo}:{tag}"
    manifest = json.loads(subprocess.run(["curl", "-sf", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                                          f"http://{sandbox.registry}/v2/{repo}/manifests/{tag}"],
                                         capture_output=True, text=True, check=True).stdout)
    layer_digests = [layer["digest"] for layer in manifest["layers"]]
    offset = REGISTRY_LOG.stat().st_size
    uid = str(pwd.getpwnam(sandbox.user).pw_uid)
    procs = [subprocess.Popen(site.cmd("pull", "--json", *(["--uid", uid] if i % 2 else []), ref),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [rc for rc, _, _ in results] == [0] * 8, [err for _, _, err in results]
    paths = {json.loads(out)["path"] for _, out, _ in results}
    assert len(paths) == 1 and "squashfs-root/etc/id" in listing(paths.pop())
    time.sleep(0.5)  # the registry writes its access log line after the response
    assert blob_gets(layer_digests, offset) == len(layer_digests)


def test_a_pull_killed_midway_leaves_nothing_valid_and_the_next_pull_works(sandbox):
    site = ImageSite()
    ref = f"{sandbox.registry}/hpcctl/debian:bookworm"
    proc = subprocess.Popen(site.cmd("pull", "--json", ref), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tmp = site.cache / "tmp"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not (tmp.is_dir() and any(tmp.iterdir())):
        time.sleep(0.002)
    # freeze the pull and its helpers (pigz, tar2sqfs) mid-way, then kill them all, as a job's end or a reboot does
    os.killpg(proc.pid, signal.SIGSTOP)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and any(tmp.iterdir()), "the pull was not killed mid-way"
    assert site.ls() == []
    assert not list((site.cache / "images").glob("*.json"))
    pulled = site.pull(ref)
    assert "squashfs-root/etc/hpcctl-test-image" in listing(pulled["path"])
    assert subprocess.run(["unsquashfs", "-s", pulled["path"]], capture_output=True).returncode == 0
    assert [p.name for p in tmp.iterdir()] == []
    assert [row["digest"] for row in site.ls()] == [pulled["digest"]]
