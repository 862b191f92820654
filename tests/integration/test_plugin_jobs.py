"""Whole jobs with the plugin, as pyxis users write them: #SBATCH lines, salloc, srun steps in a containerized batch
script, named containers and their modes, the environment a task gets, and failures that stay one line while
slurmd keeps running."""

import os
import tempfile

import pytest

from tests.integration.plugin_helpers import MARKER, NO_MPI, entrypoint_image, image, push_busybox_variant, srun, work

pytestmark = pytest.mark.integration
__all__ = ["entrypoint_image", "image", "work"]  # module fixtures


def nodes_are_up(sandbox) -> bool:
    """Both slurmd of the debug partition answer (no '*' for not responding) and neither node went down or
    drained."""
    out = sandbox.run(["sinfo", "-h", "-N", "-p", "debug", "-o", "%N %t"]).stdout.split()
    states = dict(zip(out[0::2], out[1::2]))
    return set(states) == {"n1", "n2"} and not any(
        s.endswith("*") or s.startswith(("down", "drain", "fail", "unk")) for s in states.values())


def test_sbatch_line_with_escaped_hash(sandbox):
    job = sandbox.sbatch("#!/bin/sh\n"
                         f"#SBATCH --container-image={sandbox.registry}\\#hpcctl/busybox:latest\n"
                         f"#SBATCH {NO_MPI}\n"
                         "echo image=$HPCCTL_TEST_IMAGE\n")
    assert job.state == "COMPLETED", job.output
    assert job.output.strip() == "image=busybox"


def test_salloc_then_srun_runs_in_the_image(sandbox, work, image):
    r = sandbox.run(["salloc", "-N2", "-n2", f"--container-image={image}", NO_MPI, "srun", "cat", "/etc/marker"],
                    user=sandbox.user, cwd=work, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == [MARKER, MARKER]


def test_slurm_commands_in_a_containerized_batch_script(sandbox, image):
    """srun steps inherit the script's image unless they name another; squeue, scontrol and sbatch work too."""
    job = sandbox.sbatch("#!/bin/sh\n"
                         "srun -N2 -n2 cat /etc/marker\n"
                         f"srun -N1 -n1 --container-image={sandbox.registry}/hpcctl/busybox:latest "
                         "sh -c 'echo $HPCCTL_TEST_IMAGE'\n"
                         "squeue -h -j $SLURM_JOB_ID -o %i\n"
                         "scontrol show job $SLURM_JOB_ID | grep -o 'NumNodes=2'\n"
                         "sbatch --parsable --wrap=true -o /dev/null | grep -c '^[0-9]'\n",
                         f"--container-image={image}", NO_MPI, "-N2", "-n2")
    assert job.state == "COMPLETED", job.output
    assert job.output.split("\n")[:6] == [MARKER, MARKER, "busybox", job.id, "NumNodes=2", "1"]


def test_container_name_modes(sandbox, image):
    job = sandbox.sbatch("#!/bin/sh\n"
                         f"srun --container-name=c:exec {NO_MPI} true || echo exec-refused\n"
                         f"srun --container-name=c:no_exec {NO_MPI} true || echo no_exec-refused\n"
                         f"srun --container-name=c:create --container-image={image} {NO_MPI} "
                         "sh -c 'echo kept > /tmp/state'\n"
                         f"srun --container-name=c:exec {NO_MPI} cat /tmp/state || echo stopped-exec-refused\n"
                         f"srun --container-name=c:no_exec {NO_MPI} cat /tmp/state\n"
                         f"srun --container-name=c:auto {NO_MPI} cat /tmp/state\n"
                         f"srun --container-name=c --container-image={sandbox.registry}/hpcctl/busybox:latest "
                         f"{NO_MPI} true || echo other-image-refused\n")
    assert job.state == "COMPLETED", job.output
    lines = job.output.split("\n")
    errors = [line for line in lines if line.startswith("hpcctl: error:")]
    assert errors[0] == ("hpcctl: error: --container-name: 'c' is not running in this job on n1 (start it in "
                         "another step first, or drop :exec to start it from its kept state)")
    assert errors[1] == ("hpcctl: error: --container-name: no container 'c' in this job yet (add "
                         "--container-image=IMAGE to create it)")
    assert "exec-refused" in lines and "no_exec-refused" in lines and "other-image-refused" in lines
    assert "stopped-exec-refused" in lines  # as pyxis' exec.bats: :exec needs the container running
    assert [line for line in lines if line == "kept"] == ["kept"] * 2
    assert "was made from" in errors[-1]


def test_a_running_named_container_is_joined(sandbox, image):
    """As in pyxis: a step naming a container that another step of the job runs enters that very container (same
    mount namespace, same files); :no_exec makes a new one from its kept state; :create refuses while it runs."""
    job = sandbox.sbatch("#!/bin/sh\n"
                         f"srun -n1 --container-name=c --container-image={image} {NO_MPI} sh -c "
                         "'echo one > /tmp/a; readlink /proc/self/ns/mnt > /tmp/ns; "
                         "for i in $(seq 100); do [ -e /tmp/b ] && break; sleep 0.1; done; echo first-saw-$(cat /tmp/b)' &\n"
                         "sleep 1\n"
                         f"srun -n1 --overlap --container-name=c:exec {NO_MPI} sh -c "
                         "'cat /tmp/a; [ \"$(readlink /proc/self/ns/mnt)\" = \"$(cat /tmp/ns)\" ] && echo same-ns'\n"
                         f"srun -n1 --overlap --container-name=c:no_exec {NO_MPI} sh -c "
                         "'[ \"$(readlink /proc/self/ns/mnt)\" = \"$(cat /tmp/ns)\" ] || echo own-ns'\n"
                         f"srun -n1 --overlap --container-name=c:create --container-image={image} {NO_MPI} true "
                         "2>&1 | grep -o 'is running in another step'\n"
                         f"srun -n1 --overlap --container-name=c {NO_MPI} sh -c 'echo two > /tmp/b'\n"
                         "wait\n")
    assert job.state == "COMPLETED", job.output
    assert job.output.split() == ["one", "same-ns", "own-ns", "is", "running", "in", "another", "step",
                                  "first-saw-two"], job.output


def test_environment_order_and_what_survives(sandbox, work):
    repo = "hpcctl/plugin-env-order"
    push_busybox_variant(sandbox.registry, repo, "v1", ["HPCCTL_SITE_NAME=from-image", "FROM_IMAGE=yes",
                                                        "KEEP_ME=from-image", "CUDA_VISIBLE_DEVICES=all",
                                                        "SLURM_PROCID=99", "PMIX_RANK=99"])
    r = srun(sandbox, f"--container-image={sandbox.registry}/{repo}:v1", NO_MPI, "--gres=gpu:1", "--mpi=pmix",
             "--container-env=KEEP_ME", "sh", "-c",
             "echo $FROM_IMAGE $HPCCTL_SITE_NAME $KEEP_ME $CUDA_VISIBLE_DEVICES $SLURM_PROCID $PMIX_RANK",
             cwd=work, env={"KEEP_ME": "from-host"})
    assert r.returncode == 0, r.stderr
    # image ENV applied, the site's rule over it, --container-env over both; Slurm's own values kept
    assert r.stdout.split() == ["yes", "sandbox", "from-host", "0", "0", "0"]


def test_missing_working_directory_in_a_batch_job(sandbox, image):
    job = sandbox.sbatch("#!/bin/sh\npwd\n", f"--container-image={image}", NO_MPI, "--no-container-mount-home")
    assert job.state == "COMPLETED", job.output
    lines = job.output.strip().split("\n")
    assert lines[0].startswith("hpcctl: the working directory /home/hpcuser/hpcctl-tests/")
    assert lines[0].endswith("does not exist in the container; running in / (mount it with --container-mounts or "
                             "choose one with --container-workdir)")
    assert lines[1:] == ["/"]


def test_unreadable_mount_in_a_batch_job_is_one_line_in_its_output(sandbox, image):
    private = tempfile.mkdtemp(prefix="hpcctl-private-")  # root's, mode 0700
    job = sandbox.sbatch("#!/bin/sh\necho never\n", f"--container-image={image}", NO_MPI,
                         f"--container-mounts={private}:/data")
    os.rmdir(private)
    assert job.state == "FAILED"
    assert job.output.strip() == (f"hpcctl: error: --container-mounts: {private} is not readable by you "
                                  "(mount only paths that exist and that you can read)")
    assert nodes_are_up(sandbox)


@pytest.mark.parametrize("args, words", [
    (["--container-image=127.0.0.1:5000/hpcctl/does-not-exist:latest"], "does-not-exist"),
    (["--container-image=127.0.0.1:5999/hpcctl/busybox:latest"], "127.0.0.1:5999"),
    (["--container-image=Bad Image"], "is not an image reference"),
    (["--container-image=/does/not/exist.sqsh"], "/does/not/exist.sqsh does not exist"),
    (["--container-image=127.0.0.1:5000/hpcctl/busybox:latest", "--container-mounts=/var/spool/slurmd:/x"],
     "does not let users mount"),
])
def test_bad_input_at_sbatch_is_one_line_and_nothing_runs(sandbox, work, args, words):
    r = sandbox.run(["sbatch", *args, NO_MPI, "--wrap=true"], user=sandbox.user, cwd=work, check=False,
                    timeout=180)
    assert r.returncode != 0 and not r.stdout
    lines = r.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("sbatch: error: ") and words in lines[0], r.stderr


def test_registry_down_on_the_node_is_one_line_per_node_and_the_step_fails(sandbox, work):
    """The tag was pinned at submit time; when the node then cannot reach the registry, the step fails cleanly."""
    ref = "127.0.0.1:5999/hpcctl/busybox:latest"
    pin = f"{ref} 127.0.0.1:5999/hpcctl/busybox@sha256:{'0' * 64}"
    r = srun(sandbox, "-N2", "-n4", f"--container-image={ref}", NO_MPI, "true", cwd=work,
             env={"HPCCTL_CONTAINER_PINNED": pin}, timeout=240)
    assert r.returncode != 0
    errors = [line for line in r.stderr.split("\n") if line.startswith("hpcctl: error:")]
    assert len(errors) == 2 and "127.0.0.1:5999" in errors[0], r.stderr  # one per node, not one per task
    assert nodes_are_up(sandbox)


@pytest.fixture(scope="module")
def data(sandbox, work):
    path = work / "data"
    path.mkdir()
    (path / "in.txt").write_text("hello\n")
    sandbox.run(["chown", "-R", f"{sandbox.user}:{sandbox.user}", str(path)])
    return path



@pytest.mark.parametrize("which, options, script, expected", [
    ("test", ["--container-mounts={data}:/in:ro", "--container-name=batch", "--container-mount-home",
              "--no-container-remap-root", "--container-writable"],
     "cat /in/in.txt; touch /in/x 2>/dev/null || echo ro; echo kept > /tmp/s; srun -n1 cat /tmp/s; "
     "grep -c ' /home/hpcuser ' /proc/self/mounts; id -u",
     ["hello", "ro", "kept", "1", "2001"]),
    ("test", ["--container-workdir=/opt/suid", "--no-container-mount-home", "--container-remap-root",
              "--container-readonly"],
     "pwd; grep -c ' /home/hpcuser ' /proc/self/mounts; id -u; touch /tmp/x 2>/dev/null || echo read-only",
     ["/opt/suid", "0", "0", "read-only"]),
    ("entrypoint", ["--container-entrypoint"], "echo script $ENTRYPOINT_RAN", ["script yes"]),
    ("entrypoint", ["--no-container-entrypoint"], "echo script $ENTRYPOINT_RAN", ["script"]),
    ("busybox", ["--container-env=HPCCTL_TEST_IMAGE"], "echo $HPCCTL_TEST_IMAGE", ["host"]),
])
def test_sbatch_with_each_option(sandbox, image, data, entrypoint_image, which, options, script, expected):
    chosen = {"test": image, "entrypoint": entrypoint_image, "busybox": f"{sandbox.registry}/hpcctl/busybox:latest"}
    job = sandbox.sbatch(f"#!/bin/sh\n{script}\n", f"--container-image={chosen[which]}", NO_MPI,
                         *(o.format(data=data) for o in options), "--export=ALL,HPCCTL_TEST_IMAGE=host")
    assert job.state == "COMPLETED", job.output
    lines = [line for line in job.output.split("\n") if line and not line.startswith("hpcctl: the working")]
    assert lines == expected, job.output
