"""Host MPI and fake-GPU injection through the plugin, as a user's job sees it on the sandbox."""

import hashlib
import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from fake_gpu_host import DRIVER, build_fake_host
from image_layers import e, push_to_sandbox
from image_site import hpcctl_cmd

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


def test_the_allocated_gpu_opens_as_a_device_in_the_private_dev(sandbox, images):
    """A `dev` bind keeps device nodes usable on the private /dev tmpfs (nodev): opening the fake GPU reaches the
    (absent) driver, ENXIO, instead of failing with EACCES as a nodev mount would. Fabric devices from a site
    config (/dev/infiniband/* in site-configs/gpu-ib-example.yaml) are bound the same way."""
    result = sandbox.run(["srun", "-w", "n1", "--gres=gpu:1", "--container-mpi=none", "--container-workdir=/",
                          f"--container-image={images['busybox']}", "sh", "-c", "cat /dev/nvidia*; true"],
                         user=sandbox.user, timeout=120, cwd=sandbox.workdir())
    assert re.search(r"can't open '/dev/nvidia[01]': No such device or address", result.stderr), result.stderr


@pytest.fixture(scope="module")
def nvidia_image(sandbox, tmp_path_factory):
    """A busybox image whose config sets the variables NVIDIA's CUDA images set."""
    busybox = Path("/bin/busybox").read_bytes()
    layers = [[e("bin", "dir"), e("bin/busybox", data=busybox, mode=0o755), e("bin/sh", "symlink", link="busybox"),
               e("bin/env", "symlink", link="busybox"), e("bin/grep", "symlink", link="busybox")]]
    tag = uuid.uuid4().hex[:12]
    push_to_sandbox(sandbox.registry, "hpcctl-test/nvidia-env", tag, layers, tmp_path_factory.mktemp("nvidia"),
                    env=("PATH=/bin", "NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_REQUIRE_CUDA=cuda>=12.0",
                         "NVIDIA_DRIVER_CAPABILITIES=compute,utility"))
    return f"{sandbox.registry}/hpcctl-test/nvidia-env:{tag}"


@pytest.mark.parametrize("args,expected", [
    ([], ["CVD=unset"]),
    (["--container-mpi=none"], ["CVD=unset"]),
    (["-w", "n1", "--gres=gpu:1", "--container-mpi=none"], [
        "CVD=0", "NVIDIA_DRIVER_CAPABILITIES=compute,utility", "NVIDIA_REQUIRE_CUDA=cuda>=12.0",
        "NVIDIA_VISIBLE_DEVICES=all"]),
])
def test_image_nvidia_settings_are_dropped_without_a_gpu(sandbox, nvidia_image, args, expected):
    result = sandbox.run(["srun", *args, "--container-workdir=/", f"--container-image={nvidia_image}", "sh", "-c",
                          "echo CVD=${CUDA_VISIBLE_DEVICES-unset}; env | grep ^NVIDIA_ | sort"],
                         user=sandbox.user, timeout=120, cwd=sandbox.workdir())
    assert result.stdout.split() == expected


def test_linker_cache_is_rebuilt_in_the_overlay_never_in_the_cached_image(sandbox, images):
    pulled = json.loads(sandbox.run(hpcctl_cmd("image", "pull", "--node", "n1", "--json", images["openmpi"])).stdout)
    before = hashlib.sha256(Path(pulled["path"]).read_bytes()).hexdigest()
    assert "squashfs-root/etc/ld.so.cache" in sandbox.run(["unsquashfs", "-lln", pulled["path"],
                                                           "etc/ld.so.cache"]).stdout
    start = int(time.time())
    result = sandbox.run(["srun", "-w", "n1", "--container-workdir=/", f"--container-image={images['openmpi']}",
                          "stat", "-c", "%Y", "/etc/ld.so.cache"], user=sandbox.user, timeout=120,
                         cwd=sandbox.workdir())
    assert int(result.stdout) >= start, "ldconfig rewrote the container's linker cache, in its overlay"
    assert hashlib.sha256(Path(pulled["path"]).read_bytes()).hexdigest() == before


def test_site_check_on_a_sandbox_node(sandbox):
    result = sandbox.run(hpcctl_cmd("site", "check", "--node", "n2", "--json"))
    report = json.loads(result.stdout)
    seen = {(f["what"], f["path"]): f["found"] for f in report["findings"]}
    assert seen[("spool dir", "/var/spool/slurmd/n2")] and seen[("TmpFS", "/tmp/slurmtmp_n2")]
    assert seen[("GPU device", "/dev/fakegpu/nvidia2")] and seen[("GPU device", "/dev/fakegpu/nvidia3")]
    assert seen[("library", "libmpi.so.40")] and seen[("bind", "/usr/lib/x86_64-linux-gnu/openmpi")]
    assert report["missing"] == 0 and result.returncode == 0


def test_site_explain_an_image_reference_with_a_gpu_and_host_mpi(sandbox, images):
    result = sandbox.run(hpcctl_cmd("site", "explain", "--image", images["openmpi"], "--gpus", "1", "--mpi",
                                    "openmpi", "--node", "n2"))
    lines = result.stdout.splitlines()
    assert lines[0] == (f"Plan for image {images['openmpi']} on node n2 (cluster 'sandbox'): 1 GPU(s), MPI openmpi")
    assert re.search(r"^dev +/dev/fakegpu/nvidia2 +/dev/nvidia2 +rw +allocated GPU 0 \(Slurm GRES index on n2\)$",
                     result.stdout, re.MULTILINE)
    assert re.search(rf"^bind +{HOST_LIBMPI} +{HOST_LIBMPI} +ro +MPI 'openmpi': host libmpi.so 40.30.4 over the "
                     r"image's 40.30.4 \(abi_check major\)$", result.stdout, re.MULTILINE)
    assert re.search(r"^set +CUDA_VISIBLE_DEVICES +0 +host GPUs 0 renumbered", result.stdout, re.MULTILINE)


SHOW_DRIVER = ("echo CVD=$CUDA_VISIBLE_DEVICES LD=$LD_LIBRARY_PATH; ls /dev/ | grep nvidia; stat -c '%n %t:%T' "
               "/dev/nvidia*; ls /.hpcctl/lib; nvidia-smi; ls {dev}")


def fake_gpu_site(sandbox, tmp_path, host, extra: str = "") -> Path:
    """A site config whose GPU section points at the fake driver tree ``host``."""
    site = tmp_path / "site.yaml"
    site.write_text(f"""version: 1
cluster: fakegpu
cache: {{root: {tmp_path / 'cache'}}}
registries: {{insecure: [{sandbox.registry}]}}
gpu:
  driver_libraries: [libcuda.so, libnvidia-ml.so, libnvidia-ptxjitcompiler.so]
  binaries: [{host.root}/usr/bin/nvidia-smi]
  control_devices: [{host.dev}/nvidiactl]
  device_pattern: {host.dev}/nvidia{{index}}
  ldconfig: {host.ldconfig}
{extra}""")
    return site


def run_with_gpus(sandbox, site: Path, image: str, gpus: str, script: str) -> subprocess.CompletedProcess:
    """`hpcctl run` builds the container a job step gets, here for GRES indices ``gpus`` of node n1."""
    return sandbox.run(hpcctl_cmd("--site", str(site), "run", "--gpus", gpus, "--node", "n1", "--mpi", "none",
                                  "--workdir", "/", image, "sh", "-c", script), check=False, timeout=120)


def test_a_task_on_a_fake_driver_tree_sees_exactly_its_gpus_and_the_driver(sandbox, images, tmp_path):
    host = build_fake_host(tmp_path / "host")
    site = fake_gpu_site(sandbox, tmp_path, host)

    def run(gpus: str) -> subprocess.CompletedProcess:
        return run_with_gpus(sandbox, site, images["busybox"], gpus, SHOW_DRIVER.format(dev=host.dev))

    seen = run("3,1").stdout.splitlines()
    assert seen == ["CVD=1,0 LD=/.hpcctl/lib", "nvidia1", "nvidia3", "/dev/nvidia1 c3:1", "/dev/nvidia3 c3:3",
                    "libcuda.so", "libcuda.so.1", "libnvidia-ml.so", "libnvidia-ml.so.1",
                    f"NVIDIA-SMI {DRIVER}   fake GPU table", "nvidiactl"]
    none = run("0")
    assert none.stdout.splitlines()[0] == "CVD= LD=" and "nvidia-smi: not found" in none.stderr
    assert "nvidia" not in none.stdout.split("\n", 1)[1]


def test_the_hosts_cdi_spec_replaces_the_driver_list(sandbox, images, tmp_path):
    host = build_fake_host(tmp_path / "host")
    spec = tmp_path / "nvidia.json"
    spec.write_text(json.dumps({
        "cdiVersion": "0.5.0", "kind": "nvidia.com/gpu",
        "devices": [{"name": str(i), "containerEdits": {
            "deviceNodes": [{"path": f"/dev/nvidia{i}", "hostPath": f"{host.dev}/nvidia{i}"}]}} for i in range(4)],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": "/dev/nvidiactl", "hostPath": f"{host.dev}/nvidiactl"}],
            "mounts": [{"hostPath": host.lib(f"libcuda.so.{DRIVER}"), "containerPath": "/usr/lib64/libcuda.so.1",
                        "options": ["ro", "nosuid", "nodev", "bind"]}],
            "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk",
                       "args": ["nvidia-ctk", "hook", "update-ldcache", "--folder", "/usr/lib64"]}]}}))
    site = fake_gpu_site(sandbox, tmp_path, host, f"  cdi_spec: {spec}\n")
    result = run_with_gpus(sandbox, site, images["busybox"], "2,", "echo CVD=$CUDA_VISIBLE_DEVICES "
                           "NVD=$NVIDIA_VISIBLE_DEVICES; ls /dev | grep nvidia; ls /usr/lib64; ls /.hpcctl || true")
    assert result.stdout.splitlines() == ["CVD=0 NVD=void", "nvidia2", "nvidiactl", "libcuda.so.1"], result.stderr
