"""Host MPI and fake-GPU injection through the plugin, as a user's job sees it on the sandbox."""

import re
from pathlib import Path

import pytest

from hpcctl.sandbox.mpi_image import MPICH_ABI, OPENMPI

pytestmark = pytest.mark.integration

HOST_LIBMPI = "/usr/lib/x86_64-linux-gnu/libmpi.so.40.30.4"


@pytest.fixture(scope="module")
def images(sandbox):
    """The images `hpcctl sandbox up` pushed (hpcctl.sandbox.mpi_image, test_images)."""
    return {"openmpi": f"{sandbox.registry}/{':'.join(OPENMPI)}",
            "mpich": f"{sandbox.registry}/{':'.join(MPICH_ABI)}",
            "busybox": f"{sandbox.registry}/hpcctl/busybox:latest"}


def test_mpi_hello_across_two_nodes_with_host_mpi(sandbox, images):
    job = sandbox.sbatch(f"""#!/bin/bash
srun --mpi=pmix -N2 -n4 --container-image={images['openmpi']} mpi-hello
srun --mpi=pmix -N1 -n1 --container-image={images['openmpi']} grep -c ' {HOST_LIBMPI} ' /proc/self/mountinfo
""", "-N2", "-n4", timeout=240)
    assert job.state == "COMPLETED", job.output
    hellos = sorted(line for line in job.output.splitlines() if line.startswith("hello from rank"))
    assert [int(re.search(r"rank (\d+) of 4", h).group(1)) for h in hellos] == [0, 1, 2, 3], job.output
    assert {re.search(r" on (n\d)", h).group(1) for h in hellos} == {"n1", "n2"}
    assert all("sum of ranks 6" in h and "Open MPI v4.1.4" in h for h in hellos)
    assert job.output.splitlines()[-1] == "1", "the host libmpi is bound over the image's"


def test_incompatible_mpi_is_refused_naming_both_versions(sandbox, images):
    result = sandbox.run(["srun", f"--container-image={images['mpich']}", "true"], user=sandbox.user,
                         check=False, timeout=120, cwd=sandbox.workdir())
    assert result.returncode != 0
    assert (f"host MPI 'openmpi' library {HOST_LIBMPI} (libmpi.so 40.30.4) is not ABI-compatible with the "
            "container's /usr/lib/x86_64-linux-gnu/libmpi.so.12.1.1 (libmpi.so 12.1.1): major version 40 != 12 "
            "(abi_check: major)") in result.stderr
    ok = sandbox.run(["srun", f"--container-image={images['mpich']}", "--container-mpi=none", "true"],
                     user=sandbox.user, check=False, timeout=120, cwd=sandbox.workdir())
    assert ok.returncode == 0, ok.stderr


SHOW_GPUS = ("echo STEP=$SLURM_STEP_GPUS CVD=$CUDA_VISIBLE_DEVICES; ls /dev/nvidia*; "
             "for d in /dev/nvidia*; do stat -c '%t:%T' $d; done")
FIRST_GPU = {"n1": 0, "n2": 2}  # /dev/fakegpu/nvidia0-1 on n1, nvidia2-3 on n2 (gres.conf)


@pytest.mark.parametrize("node,gpus", [("n2", 1), ("n1", 2)])
def test_fake_gpus_exactly_the_allocated_devices(sandbox, images, node, gpus):
    result = sandbox.run(["srun", "-w", node, f"--gres=gpu:{gpus}", "--container-mpi=none",
                          f"--container-image={images['busybox']}", "sh", "-c", SHOW_GPUS],
                         user=sandbox.user, timeout=120, cwd=sandbox.workdir())
    head, *rest = result.stdout.splitlines()
    step_gpus = [int(i) for i in re.fullmatch(r"STEP=([\d,]+) CVD=.*", head).group(1).split(",")]
    minors = sorted(FIRST_GPU[node] + i for i in step_gpus)
    assert len(step_gpus) == gpus
    assert head.endswith(f" CVD={','.join(str(i) for i in range(gpus))}")
    assert rest == [f"/dev/nvidia{m}" for m in minors] + [f"c3:{m:x}" for m in minors]


def test_no_gpu_no_device(sandbox, images):
    result = sandbox.run(["srun", "--container-mpi=none", f"--container-image={images['busybox']}", "sh", "-c",
                          "ls /dev/nvidia* 2>/dev/null | wc -l; echo CVD=${CUDA_VISIBLE_DEVICES-unset}"],
                         user=sandbox.user, timeout=120, cwd=sandbox.workdir())
    assert result.stdout.split() == ["0", "CVD=unset"]


def test_the_container_gets_a_private_dev_and_the_hosts_is_untouched(sandbox, images):
    """Regression: /dev used to be the host's, and GPU mount points were created as files in the host's /dev."""
    result = sandbox.run(["srun", "-w", "n1", "--gres=gpu:1", "--container-mpi=none",
                          f"--container-image={images['busybox']}", "sh", "-c",
                          "ls /dev; echo via-fd > /dev/stderr; ls /dev/shm >/dev/null && echo shm-ok"],
                         user=sandbox.user, timeout=120, cwd=sandbox.workdir())
    listed = result.stdout.split()
    gpus = [name for name in listed if name.startswith("nvidia")]
    assert len(gpus) == 1 and gpus[0] in ("nvidia0", "nvidia1")
    assert sorted(set(listed) - set(gpus)) == ["fd", "full", "null", "ptmx", "pts", "random", "shm", "shm-ok",
                                               "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    assert "via-fd" in result.stderr
    assert list(Path("/dev").glob("nvidia*")) == []
