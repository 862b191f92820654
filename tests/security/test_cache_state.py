"""Shared root state that users can touch (issue 10, class 3): the node image cache's locks and its gc.

Acting as the sandbox user: no lock file of the node cache can be opened, so none can be held to hang another user's
step or pull; whatever the user can open and lock does not hold up a step; a manifest that claims a huge layer makes
gc evict nothing; a lock held past its bound (now only root can hold one) ends a pull with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from hpcctl.image import api, locks
from hpcctl.image.errors import LockBusy
from hpcctl.sandbox.oci_push import Layer, Pusher, image_config
from hpcctl.site.config import load_site
from tests.image_layers import e, gz_layer, push_to_sandbox
from tests.integration.image_site import ImageSite, hpcctl_cmd
from tests.integration.plugin_helpers import NO_MPI, srun

pytestmark = pytest.mark.integration
SANDBOX_SITE = Path(__file__).resolve().parents[2] / "site-configs" / "sandbox.yaml"

# Run as the user: for each path, whether it opens for reading, for writing, and takes an exclusive flock.
PROBE = """
import fcntl, json, sys
def attempt(path, mode):
    try:
        with open(path, mode) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return "ok"
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({p: {"read": attempt(p, "rb"), "write": attempt(p, "r+b")} for p in sys.argv[1:]}))
"""

# Run as the user: lock every given file it can open, say how many, and keep them locked.
HOLD = """
import fcntl, sys, time
held = []
for path in sys.argv[1:]:
    try:
        fh = open(path, "rb")
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(fh)
    except OSError:
        pass
print(len(held), flush=True)
time.sleep(600)
"""


def cache_files(root: Path) -> list[Path]:
    return sorted(Path(d) / name for d, _, names in os.walk(root) for name in names)


def busybox(sandbox) -> str:
    return f"{sandbox.registry}/hpcctl/busybox:latest"


@pytest.fixture(scope="module")
def node_cache(sandbox, tmp_path_factory) -> Path:
    """The sandbox's node cache after root pulled a new image into it and used another, as the plugin does for job
    steps (a cache an older hpcctl made is fixed up then)."""
    tag = uuid.uuid4().hex[:12]
    push_to_sandbox(sandbox.registry, "hpcctl-test/cache-state", tag, [[e("id", data=tag.encode())]],
                    tmp_path_factory.mktemp("layers"))
    for ref in (f"{sandbox.registry}/hpcctl-test/cache-state:{tag}", busybox(sandbox)):
        subprocess.run(hpcctl_cmd("--site", str(SANDBOX_SITE), "image", "pull", "--node", "n1", ref), check=True,
                       capture_output=True)
    return Path(load_site(str(SANDBOX_SITE)).cache.root_for("n1"))


def probe_as_user(sandbox, paths: list[Path]) -> dict:
    result = sandbox.run(["python3", "-c", PROBE, *map(str, paths)], user=sandbox.user)
    return json.loads(result.stdout)


def test_the_user_can_open_no_lock_file_of_the_node_cache(sandbox, node_cache):
    lock_files = sorted((node_cache / "locks").iterdir())
    assert any(p.name.endswith(".use") for p in lock_files) and (node_cache / "locks" / "gc.lock") in lock_files
    probed = probe_as_user(sandbox, lock_files)
    assert probed == {str(p): {"read": "PermissionError", "write": "PermissionError"} for p in lock_files}
    listed = sandbox.run(["ls", str(node_cache / "locks")], user=sandbox.user, check=False)
    assert listed.returncode != 0 and "Permission denied" in listed.stderr


def test_the_user_can_write_nothing_in_the_node_cache_and_read_only_its_images(sandbox, node_cache):
    probed = {p: r for p, r in probe_as_user(sandbox, cache_files(node_cache)).items() if os.path.exists(p)}
    assert {r["write"] for r in probed.values()} == {"PermissionError"}
    readable = {Path(p).parent for p, r in probed.items() if r["read"] == "ok"}
    assert readable == {node_cache / "images"}  # public images and their metadata (`hpcctl image ls`)
    for path in [node_cache, *cache_files(node_cache), *(Path(d) for d, _, _ in os.walk(node_cache))]:
        st = os.lstat(path)
        assert (st.st_uid, st.st_mode & 0o022) == (0, 0), path


def test_what_the_user_can_lock_does_not_hold_up_a_step(sandbox, node_cache):
    holder = subprocess.Popen(["runuser", "-u", sandbox.user, "--", "python3", "-c", HOLD,
                               *map(str, cache_files(node_cache))],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert int(holder.stdout.readline()) > 0  # the public images and their metadata
        started = time.monotonic()
        ran = srun(sandbox, "-w", "n1", f"--container-image={busybox(sandbox)}", NO_MPI, "true", cwd=sandbox.workdir(),
                   timeout=90)
        assert ran.returncode == 0 and time.monotonic() - started < 60, ran.stderr
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()


def test_the_user_still_lists_the_node_cache_as_root_sees_it(sandbox):
    site = ImageSite()
    site.pull(busybox(sandbox))
    site.pull(busybox(sandbox))  # a use, after the pull: recorded where the user can read it
    as_user = sandbox.run(site.cmd("ls", "--json"), user=sandbox.user,
                          env={"XDG_CACHE_HOME": str(sandbox.workdir())})
    assert [row for row in json.loads(as_user.stdout) if row["cache"] == str(site.cache)] == site.ls()


def push_claiming_a_huge_layer(sandbox, tmp_path) -> str:
    blob, digest, diff_id = gz_layer([e("etc", "dir"), e("etc/claim", data=b"small")])
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(blob)
    repo, tag = "hpcctl-test/huge-claim", uuid.uuid4().hex[:12]
    Pusher(sandbox.registry).push_image(repo, tag, [Layer(path, digest, diff_id, 10 << 40)],
                                        image_config(["PATH=/bin"], ["/bin/sh"]))
    return f"{sandbox.registry}/{repo}:{tag}"


def test_a_manifest_claiming_a_huge_layer_makes_gc_evict_nothing(sandbox, tmp_path):
    site = ImageSite()
    site.pull(busybox(sandbox))
    site.pull(f"{sandbox.registry}/hpcctl/debian:bookworm")
    before = site.ls()
    result = site.run("pull", push_claiming_a_huge_layer(sandbox, tmp_path), check=False)
    assert result.returncode != 0 and result.stderr.startswith("hpcctl: error: no space left for ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert [row["digest"] for row in site.ls()] == [row["digest"] for row in before]


def hold_as_root(path: Path) -> subprocess.Popen:
    holder = subprocess.Popen(["flock", "-x", str(path), "sleep", "120"], start_new_session=True)
    deadline = time.monotonic() + 10
    while subprocess.run(["flock", "-n", str(path), "true"]).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return holder


@pytest.mark.parametrize("lock", ["gc.lock", "{key}.pull"])
def test_a_lock_held_past_its_bound_ends_the_pull_with_one_line(sandbox, monkeypatch, lock):
    monkeypatch.setattr(locks, "GC_WAIT_S", 2)
    monkeypatch.setattr(locks, "PULL_WAIT_S", 2)
    site = ImageSite()
    site.pull(busybox(sandbox))
    ref = f"{sandbox.registry}/hpcctl/debian:bookworm"
    key = api.resolve(ref, load_site(str(site.file))).digest[7:]
    path = site.cache / "locks" / lock.format(key=key)
    holder = hold_as_root(path)
    try:
        started = time.monotonic()
        with pytest.raises(LockBusy) as info:
            api.ensure(ref, load_site(str(site.file)))
        assert time.monotonic() - started < 10
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"pid {holder.pid}" in message, message
    assert [row["reference"] for row in site.ls()] == [busybox(sandbox)]
    assert site.pull(ref)["reference"] == ref
