"""One builder (issue 12): `hpcctl site explain` prints the plan `hpcctl run --plan-only` prints, and a job step
gets the container `hpcctl run` gets, for the same inputs (GPU, MPI, user mounts, home)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hpcctl.container import slurm_client
from tests.integration.plugin_helpers import srun

pytestmark = pytest.mark.integration

OPENMPI = "127.0.0.1:5000/hpcctl/openmpi:bookworm"


@pytest.fixture(scope="module")
def work(sandbox):
    work = sandbox.workdir()
    (work / "data").mkdir()
    subprocess.run(["chown", "-R", f"{sandbox.user}:{sandbox.user}", str(work)], check=True)
    return work


def hpcctl(sandbox, work, *args: str) -> dict:
    r = sandbox.run([sys.executable, "-m", "hpcctl", *args], env={"SUDO_USER": sandbox.user}, check=True,
                    timeout=120, cwd=work)
    return json.loads(r.stdout)


@pytest.mark.parametrize("inputs", [("--gpus", "1", "--node", "n1", "--mpi", "openmpi"),
                                    ("--node", "n2", "--mpi", "none")], ids=["gpu-mpi", "plain"])
def test_site_explain_prints_the_plan_hpcctl_run_builds(sandbox, work, inputs):
    explained = hpcctl(sandbox, work, "site", "explain", "--json", "--image", OPENMPI, *inputs)
    planned = hpcctl(sandbox, work, "run", "--plan-only", "--json", *inputs, OPENMPI, "--", "true")
    assert explained["plan"] == planned["plan"]
    assert {k: v for k, v in explained.items() if k not in ("node", "gpus", "mpi")} == \
        {k: v for k, v in planned.items() if k != "command"}


def mount_points(text: str) -> set[tuple[str, str, str]]:
    """(mount point, file system type, options) of each mount in a mountinfo listing."""
    out = set()
    for line in text.splitlines():
        fields = line.split()
        dash = fields.index("-")
        out.add((fields[4], fields[dash + 1], fields[5]))
    return out


def test_a_job_step_gets_the_container_hpcctl_run_builds(sandbox, work):
    show = ["cat", "/proc/self/mountinfo"]
    step = srun(sandbox, "-w", "n1", "--gres=gpu:1", f"--container-image={OPENMPI}",
                f"--container-mounts={work}/data:/data:ro", *show, cwd=work)
    assert step.returncode == 0, step.stderr
    run = sandbox.run([sys.executable, "-m", "hpcctl", "run", "--gpus", "1", "--node", "n1", "--mounts",
                       f"{work}/data:/data:ro", OPENMPI, "--", *show], env={"SUDO_USER": sandbox.user},
                      check=True, timeout=120, cwd=work)
    in_job, in_run = mount_points(step.stdout), mount_points(run.stdout)
    # what a job step adds by design: Slurm's commands inside (hpcctl.container.slurm_client), read-only
    slurm_commands = {m.target for m in slurm_client.mounts("/etc/slurm", "/run/hpcctl")}
    assert in_run <= in_job
    extra = in_job - in_run
    assert {m[0] for m in extra} == slurm_commands and all(m[2].startswith("ro,") for m in extra), extra


def test_a_users_site_explain_is_a_plan_or_one_line(sandbox):
    """Without root the node cache's locks and the kernel's squashfs mount are out of reach: one clear line (or
    the plan, where /dev/fuse lets the user mount), never a traceback."""
    r = sandbox.run([sys.executable, "-m", "hpcctl", "site", "explain", "--image",
                     f"{sandbox.registry}/hpcctl/busybox:latest", "--mpi", "none"], user=sandbox.user, check=False,
                    timeout=120, cwd="/tmp")
    assert "Traceback" not in r.stderr
    assert r.returncode == 0 or len(r.stderr.strip().splitlines()) == 1, r.stderr
