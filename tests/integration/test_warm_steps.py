"""Warm steps (issue 16): a later step of the same shape reuses the reply the core built, without running Python, and
any change of an input it was built from makes a new one. Kept replies are root's (/run/hpcctl/plans, 0700/0600):
an entry is reused when the same file (inode) is there after the step, rebuilt when the step left a new file."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import MARKER, NO_MPI, image, push_busybox_variant, work  # noqa: F401

pytestmark = pytest.mark.integration

PLANS = Path("/run/hpcctl/plans")  # plugin.runtime_dir of the sandbox's site config, + /plans


@pytest.fixture
def place(sandbox):
    """A working directory of its own: it is part of the key, so this test's entries are told apart from others'."""
    path = Path(f"/tmp/hpcctl-warm-{uuid.uuid4().hex[:8]}")
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    yield path
    path.rmdir()


@pytest.fixture(scope="module")
def registry_image(sandbox):
    """Two tags of a public image, already in both nodes' caches (a step that pulls is never kept: it was not
    found by its pinned digest in the node cache)."""
    repo = "hpcctl/warm-steps"
    push_busybox_variant(sandbox.registry, repo, "v1", ["WARM=v1"])
    push_busybox_variant(sandbox.registry, repo, "v2", ["WARM=v2"])
    for tag in ("v1", "v2"):
        result = sandbox.run(["srun", "-N2", NO_MPI, f"--container-image={sandbox.registry}/{repo}:{tag}", "true"],
                             user=sandbox.user, cwd="/tmp", timeout=300, check=False)
        assert result.returncode == 0, result.stderr
    return f"{sandbox.registry}/{repo}"


def entries(place: Path) -> dict[str, int]:
    """name -> inode of the kept replies made for steps started in ``place``."""
    found = {}
    for entry in PLANS.iterdir():
        try:
            key = json.loads(json.loads(entry.read_text())["key"])
        except (OSError, ValueError):
            continue  # being replaced right now
        if key.get("cwd") == str(place):
            found[entry.name] = entry.stat().st_ino
    return found


def step(sandbox, place: Path, *args: str, user: str | None = None, env: dict | None = None,
         command: str = "cat /etc/marker 2>/dev/null || echo $WARM") -> str:
    result = sandbox.run(["srun", "-N1", NO_MPI, *args, "sh", "-c", command], user=user or sandbox.user,
                         check=False, cwd=place, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_later_step_reuses_the_reply_and_runs_in_the_container(sandbox, place, registry_image):
    assert step(sandbox, place, "-w", "n1", f"--container-image={registry_image}:v1") == "v1"
    first = entries(place)
    assert len(first) == 1
    for _ in range(2):  # later jobs' steps too: nothing in a kept reply is one job's
        assert step(sandbox, place, "-w", "n1", f"--container-image={registry_image}:v1") == "v1"
    assert entries(place) == first


def test_kept_replies_are_root_only(sandbox, place, registry_image):
    step(sandbox, place, "-w", "n1", f"--container-image={registry_image}:v1")
    assert PLANS.stat().st_uid == 0 and PLANS.stat().st_mode & 0o077 == 0
    for entry in PLANS.iterdir():
        assert entry.stat().st_uid == 0 and entry.stat().st_mode & 0o077 == 0
    denied = sandbox.run(["ls", str(PLANS)], user=sandbox.user, check=False)
    assert denied.returncode != 0


@pytest.mark.parametrize("change", [
    pytest.param(["--container-env=WARM"], id="options"),
    pytest.param(["--container-remap-root"], id="options-remap-root"),
    pytest.param(["-w", "n2"], id="node"),
    pytest.param(["--gres=gpu:1"], id="gpu-set"),
])
def test_each_key_input_makes_its_own_reply(sandbox, place, registry_image, change):
    base = ["-w", "n1", f"--container-image={registry_image}:v1"]
    step(sandbox, place, *base)
    before = entries(place)
    if change[0] == "-w":
        base = base[2:]
    step(sandbox, place, *base, *change)
    after = entries(place)
    assert len(after) == len(before) + 1 or any(after.get(n) != i for n, i in before.items()), (before, after)


def test_another_image_digest_makes_its_own_reply(sandbox, place, registry_image):
    step(sandbox, place, "-w", "n1", f"--container-image={registry_image}:v1")
    before = entries(place)
    assert step(sandbox, place, "-w", "n1", f"--container-image={registry_image}:v2") == "v2"
    assert len(entries(place)) == len(before) + 1


def test_another_user_gets_a_reply_of_their_own(sandbox, place, registry_image):
    step(sandbox, place, "-w", "n1", f"--container-image={registry_image}:v1")
    before = entries(place)
    assert step(sandbox, place, "-w", "n1", f"--container-image={registry_image}:v1", user="hpcother") == "v1"
    after = entries(place)
    assert len(after) == len(before) + 1
    users = {json.loads(json.loads((PLANS / n).read_text())["key"])["uid"] for n in after}
    assert users == {2001, 2002}


def test_a_job_variable_the_core_read_is_checked_again(sandbox, place, registry_image):
    """HPCCTL_VERBOSE (the user's to set) makes the core show what it injected: a reply built without it is not
    reused for a step with it (same key: the shim checks the variables the core read), nor the other way round."""
    args = ["-w", "n1", "--gres=gpu:1", f"--container-image={registry_image}:v1"]
    for verbose in ("0", "0", "1", "0"):
        result = sandbox.run(["srun", "-N1", NO_MPI, *args, "true"], user=sandbox.user, check=False, cwd=place,
                             env={"HPCCTL_VERBOSE": verbose}, timeout=120)
        assert result.returncode == 0, result.stderr
        assert ("hpcctl: driver" in result.stderr) == (verbose == "1"), result.stderr


def test_a_changed_site_config_makes_a_new_reply(sandbox, place, registry_image):
    args = ["-w", "n1", f"--container-image={registry_image}:v1"]
    step(sandbox, place, *args)
    before = entries(place)
    site = Path("/etc/hpcctl/site.yaml")
    stamp = site.stat()
    os.utime(site, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
    try:
        step(sandbox, place, *args)
    finally:
        os.utime(site, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert len(entries(place)) == len(before) + 1


def test_an_expired_reply_is_rebuilt(sandbox, place, registry_image):
    args = ["-w", "n1", f"--container-image={registry_image}:v1"]
    step(sandbox, place, *args)
    (name, _), = entries(place).items()
    entry = json.loads((PLANS / name).read_text())
    entry["created"] -= entry["warm"]["ttl_s"] + 1
    (PLANS / name).write_text(json.dumps(entry))
    step(sandbox, place, *args)
    assert json.loads((PLANS / name).read_text())["created"] > entry["created"] + entry["warm"]["ttl_s"]


def test_steps_with_a_users_mounts_or_image_file_are_never_kept(sandbox, place, image):  # noqa: F811
    assert step(sandbox, place, "-w", "n1", f"--container-image={image}") == MARKER
    assert step(sandbox, place, "-w", "n1", f"--container-image={image}", f"--container-mounts={place}:/data",
                command="ls /data >/dev/null && cat /etc/marker") == MARKER
    assert entries(place) == {}


def test_a_kept_gpu_reply_gives_no_gpu_to_a_step_that_only_names_it(sandbox, place, registry_image):
    """Attack: a GPU step's reply is kept; a later step with no GPU copies the GPU variables into its environment
    (same key, same recorded variables). The shim asks the step's device cgroup again, which refuses the device, so
    the core builds the step anew and it gets no GPU."""
    args = ["-w", "n1", f"--container-image={registry_image}:v1"]
    granted = step(sandbox, place, *args, "--gres=gpu:1", command="echo $SLURM_STEP_GPUS")
    assert granted.isdigit(), granted
    claimed = f"--export=ALL,SLURM_STEP_GPUS={granted},SLURM_JOB_GPUS={granted},CUDA_VISIBLE_DEVICES={granted}"
    devices = step(sandbox, place, *args, claimed, command="ls /dev; echo GPUS=$SLURM_STEP_GPUS")
    assert not [name for name in devices.split() if name.startswith("nvidia")], devices
