"""The sandbox as a user and an admin see it: real daemons, real jobs, real registry."""

import json
import re
import subprocess
import urllib.request

import pytest

from tests.conftest import hpcctl_cmd

pytestmark = pytest.mark.integration

MPI_HELLO = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size, len; char node[MPI_MAX_PROCESSOR_NAME];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int sum = 0;
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d sum %d on %s\n", rank, size, sum, getenv("SLURMD_NODENAME"));
    MPI_Finalize();
    return 0;
}
"""


def test_sinfo_shows_two_up_nodes_with_gpu_gres(sandbox):
    rows = [line.split() for line in sandbox.run(["sinfo", "-h", "-N", "-p", "debug", "-o", "%N %T %G"]).stdout
            .splitlines()]
    assert [(name, gres) for name, _, gres in rows] == [("n1", "gpu:fake:2"), ("n2", "gpu:fake:2")]
    # other tests' jobs may still run or be completing; never down or drained
    assert all(state.rstrip("*-") in ("idle", "mixed", "allocated", "completing", "planned")  # -: backfill plans it
               for _, state, _ in rows), rows


def test_batch_job_runs_as_the_unprivileged_user(sandbox):
    job = sandbox.sbatch("#!/bin/bash\nid -un\necho node=$SLURMD_NODENAME\n")
    assert job.state == "COMPLETED", job.output
    assert job.output.splitlines()[0] == "hpcuser"
    assert job.output.splitlines()[1] in ("node=n1", "node=n2")


def test_gres_sets_cuda_visible_devices_and_cgroup_hides_the_other_gpu(sandbox):
    # The fake GPUs have no driver: an allowed device answers ENXIO, a denied one EPERM (device cgroup).
    # Which of n1's two GPUs the job gets depends on what a previous job still holds: SLURM_JOB_GPUS says.
    script = ("#!/bin/bash\necho CUDA=$CUDA_VISIBLE_DEVICES GPU=$SLURM_JOB_GPUS\n"
              "for d in /dev/fakegpu/nvidia0 /dev/fakegpu/nvidia1; do head -c1 $d 2>&1; done\ntrue\n")
    job = sandbox.sbatch(script, "--gres=gpu:1", "--nodelist=n1")
    assert job.state == "COMPLETED", job.output
    head, *opened = job.output.splitlines()
    mine = int(re.fullmatch(r"CUDA=0 GPU=([01])", head).group(1))
    assert opened[mine].endswith(f"nvidia{mine}' for reading: No such device or address")
    assert opened[1 - mine].endswith(f"nvidia{1 - mine}' for reading: Operation not permitted")


def test_job_over_the_gpu_limit_is_refused(sandbox):
    result = sandbox.run(["sbatch", "--gres=gpu:3", "--wrap=true"], user=sandbox.user, check=False)
    assert result.returncode != 0
    assert "Requested node configuration is not available" in result.stderr


def test_multi_node_step(sandbox):
    work = sandbox.workdir()
    out = sandbox.run(["srun", "-N2", "--ntasks-per-node=2", "bash", "-c", "echo $SLURM_PROCID $SLURMD_NODENAME"],
                      user=sandbox.user, cwd=work, timeout=120).stdout
    assert sorted(out.split("\n")[:-1]) == ["0 n1", "1 n1", "2 n2", "3 n2"]


def test_pmix_mpi_hello_across_two_nodes(sandbox):
    work = sandbox.workdir()
    (work / "hello.c").write_text(MPI_HELLO.replace("#include <stdio.h>", "#include <stdio.h>\n#include <stdlib.h>"))
    sandbox.run(["mpicc", "-o", "hello", "hello.c"], user=sandbox.user, cwd=work)
    out = sandbox.run(["srun", "--mpi=pmix", "-N2", "-n4", "./hello"], user=sandbox.user, cwd=work, timeout=120,
                      env={"OMPI_MCA_btl": "self,tcp"}).stdout
    lines = sorted(out.strip().split("\n"))
    assert [line.split(" on ")[0] for line in lines] == [f"rank {r} of 4 sum 6" for r in range(4)]
    assert {line.split(" on ")[1] for line in lines} == {"n1", "n2"}


def test_registry_holds_the_test_images(sandbox):
    catalog = json.load(urllib.request.urlopen(f"http://{sandbox.registry}/v2/_catalog"))
    assert {"hpcctl/busybox", "hpcctl/debian"} <= set(catalog["repositories"])
    req = urllib.request.Request(f"http://{sandbox.registry}/v2/hpcctl/debian/manifests/bookworm",
                                 headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    manifest = json.load(urllib.request.urlopen(req))
    assert len(manifest["layers"]) == 4
    assert sum(layer["size"] for layer in manifest["layers"]) > 40_000_000


def test_auth_registry_refuses_anonymous_and_accepts_the_password(sandbox):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{sandbox.auth_registry}/v2/_catalog")
    assert err.value.code == 401
    out = sandbox.run(["curl", "-sf", "-u", f"{sandbox.auth_user}:{sandbox.auth_password}",
                       f"http://{sandbox.auth_registry}/v2/_catalog"]).stdout
    assert "private/busybox" in out


def test_second_up_changes_nothing(sandbox):
    out = subprocess.run(hpcctl_cmd("sandbox", "up"), capture_output=True, text=True, check=True).stdout
    assert "sandbox ready (nothing changed)" in out
    assert "started" not in out and "written" not in out and "pushed" not in out


def test_status_reports_every_daemon_running_with_its_log(sandbox):
    result = subprocess.run(hpcctl_cmd("sandbox", "status", "--json"), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    info = json.loads(result.stdout)
    names = {d["name"]: d for d in info["daemons"]}
    nodes = [f"n{i}" for i in range(1, info["node_count"] + 1)]  # 2 unless `sandbox up --nodes N` said otherwise
    assert set(names) == {"munged", "slurmctld", *(f"slurmd {n}" for n in nodes), "registry", "registry-auth",
                          "registry-mirror"}
    assert all(d["pid"] for d in names.values())
    assert names["slurmd n1"]["log"] == "/var/log/hpcctl-sandbox/slurmd-n1.log"
    assert set(info["nodes"]) == set(nodes)


def test_site_check_passes_on_the_sandbox_node(sandbox):
    result = subprocess.run(hpcctl_cmd("site", "check", "--node", "n1", "/etc/hpcctl/site.yaml"),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid site config for cluster 'sandbox'" in result.stdout


def test_demo_runs_a_containerized_gpu_job_as_the_test_user(sandbox):
    out = subprocess.run(hpcctl_cmd("sandbox", "demo"), capture_output=True, text=True, check=True).stdout
    command, *lines = out.splitlines()
    assert command.startswith("$ sbatch --wait") and "--container-image=127.0.0.1:5000/hpcctl/busybox:latest" in command
    assert re.fullmatch(r"job \d+ on n[12] as hpcuser", lines[0])
    assert lines[1:3] == ['image: NAME="hpcctl busybox test image"', "GPUs: CUDA_VISIBLE_DEVICES=0"]
