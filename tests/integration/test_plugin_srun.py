"""srun/sbatch --container-image as hpcuser on the sandbox: what the user sees on the terminal and in job files."""

import pytest

from tests.integration.plugin_helpers import MARKER, NO_MPI, image, srun, work

pytestmark = pytest.mark.integration
__all__ = ["image", "work"]  # module fixtures


@pytest.mark.parametrize("command", ["sbatch", "srun", "salloc"])
def test_options_in_help(sandbox, command):
    out = sandbox.run([command, "--help"], user=sandbox.user).stdout
    for option in ("--container-image", "--container-mounts", "--container-workdir", "--container-name",
                   "--container-env", "--container-mount-home", "--no-container-mount-home", "--container-remap-root",
                   "--container-entrypoint", "--no-container-entrypoint", "--container-writable",
                   "--container-readonly"):
        assert option in out, option


def test_srun_runs_in_the_image_as_the_user(sandbox, work, image):
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "sh", "-c",
             "cat /etc/marker; id -u; pwd; echo $SLURM_JOB_ID; grep NoNewPrivs /proc/self/status", cwd=work)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == MARKER
    assert lines[1] == "2001"
    assert lines[2] == str(work)  # the job's working directory, through the home mount
    assert lines[3].isdigit()
    assert lines[4].split() == ["NoNewPrivs:", "1"]


def test_multi_node_step_shares_one_image_per_node(sandbox, work, image):
    """Every task runs in the image; the tasks of a node share one mount namespace (one container), whose root
    is an overlay on the squashfs."""
    r = srun(sandbox, "-N2", "-n4", f"--container-image={image}", NO_MPI, "sh", "-c",
             'echo "$SLURM_PROCID $(cat /etc/marker) $SLURMD_NODENAME $(readlink /proc/self/ns/mnt) '
             '$(grep \' / \' /proc/self/mounts | cut -d\' \' -f3)"', cwd=work)
    assert r.returncode == 0, r.stderr
    rows = sorted(line.split() for line in r.stdout.split("\n")[:-1])
    assert [(rank, marker, root) for rank, marker, _, _, root in rows] == [(str(i), MARKER, "overlay")
                                                                         for i in range(4)]
    namespaces = {node: {ns for _, _, n, ns, _ in rows if n == node} for _, _, node, _, _ in rows}
    assert sorted(namespaces) == ["n1", "n2"] and all(len(ns) == 1 for ns in namespaces.values())
    assert namespaces["n1"] != namespaces["n2"]


def test_setuid_binary_in_the_image_does_not_raise_privileges(sandbox, work, image):
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "sh", "-c",
             "ls -l /opt/suid/id; /opt/suid/id -u; grep ' / ' /proc/self/mounts", cwd=work)
    assert r.returncode == 0, r.stderr
    listing, euid, root_mount = r.stdout.split("\n")[:3]
    assert listing.startswith("-rwsr-xr-x")  # the bit is there ...
    assert euid == "2001"  # ... and does nothing
    assert "nosuid" in root_mount and "nodev" in root_mount


def test_user_mounts_ro_rw_and_tmpfs(sandbox, work, image):
    data = work / "data"
    data.mkdir()
    (data / "in.txt").write_text("hello\n")
    sandbox.run(["chown", "-R", f"{sandbox.user}:{sandbox.user}", str(data)])
    r = srun(sandbox, f"--container-image={image}", NO_MPI, f"--container-mounts={data}:/in:ro,{data}:/out,tmpfs:/scr",
             "sh", "-c", "cat /in/in.txt; touch /in/x 2>&1 | tail -1; echo w > /out/new; echo t > /scr/t && "
             "grep ' /scr ' /proc/self/mounts | cut -d' ' -f3", cwd=work)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split("\n")
    assert out[0] == "hello"
    assert "Read-only file system" in out[1]
    assert out[2] == "tmpfs"
    assert (data / "new").read_text() == "w\n"


def test_workdir_readonly_and_writable(sandbox, work, image):
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "--container-workdir=/opt/suid", "--container-readonly",
             "sh", "-c", "pwd; touch /tmp/x 2>&1 | tail -1", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "/opt/suid"
    assert "Read-only file system" in r.stdout
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "--container-writable", "sh", "-c",
             "touch /tmp/x && echo wrote", cwd=work)
    assert r.stdout.strip() == "wrote", r.stderr


def test_missing_working_directory_says_which_is_used(sandbox, image):
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "--no-container-mount-home", "pwd",
             cwd=f"/home/{sandbox.user}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/"
    assert (f"hpcctl: the working directory /home/{sandbox.user} does not exist in the container; running in /"
            in r.stderr)


def test_environment_order_and_slurm_variables(sandbox, work, image):
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "--container-env=MY_VAR", "sh", "-c",
             "echo $MY_VAR $HPCCTL_SITE_NAME $SLURM_NTASKS $SLURM_PROCID", cwd=work, env={"MY_VAR": "host"})
    assert r.stdout.split() == ["host", "sandbox", "1", "0"], r.stderr


def test_environment_defaults_and_command_line_wins(sandbox, work, image):
    env = {"PYXIS_CONTAINER_IMAGE": "/nonexistent.sqsh", "HPCCTL_CONTAINER_WORKDIR": "/etc"}
    r = srun(sandbox, NO_MPI, "pwd", cwd=work, env={**env, "PYXIS_CONTAINER_IMAGE": image})
    assert r.returncode == 0 and r.stdout.strip() == "/etc", r.stderr
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "pwd", cwd=work, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "/etc", r.stderr


def test_home_is_mounted_unless_asked_not_to(sandbox, work, image):
    home = f"/home/{sandbox.user}"
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "ls", "-d", home, cwd=work)
    assert r.stdout.strip() == home
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "--no-container-mount-home", "ls", home, cwd="/tmp")
    assert r.returncode != 0


def test_sbatch_script_runs_inside_the_image(sandbox, image):
    job = sandbox.sbatch(f"#!/bin/sh\n#SBATCH --container-image={image}\n#SBATCH {NO_MPI}\n"
                         "cat /etc/marker\necho script=$0\n")
    assert job.state == "COMPLETED", job.output
    lines = job.output.split("\n")
    assert lines[0] == MARKER
    assert lines[1].startswith("script=/var/spool/slurmd/")


def test_slurm_config_and_munge_are_in_the_container(sandbox, work, image):
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "sh", "-c", "ls /etc/slurm/slurm.conf /run/munge",
             cwd=work)
    assert "/etc/slurm/slurm.conf" in r.stdout and "munge.socket" in r.stdout, r.stderr


def test_named_container_is_reused_across_steps_of_a_job(sandbox, image):
    job = sandbox.sbatch("#!/bin/sh\n"
                         f"srun --container-name=keep --container-image={image} {NO_MPI} "
                         "sh -c 'echo kept > /tmp/state'\n"
                         f"srun --container-name=keep {NO_MPI} cat /tmp/state /etc/marker\n"
                         f"srun --container-name=keep:create --container-image={image} {NO_MPI} "
                         "sh -c 'cat /tmp/state 2>/dev/null || echo fresh'\n")
    assert job.state == "COMPLETED", job.output
    assert job.output.split("\n")[:3] == ["kept", MARKER, "fresh"]


def test_the_user_is_known_in_the_image_and_its_own_users_are_kept(sandbox, work):
    r = srun(sandbox, f"--container-image={sandbox.registry}/hpcctl/debian:bookworm", NO_MPI, "sh", "-c",
             "id -un; id -gn; getent passwd root _apt | cut -d: -f1; stat -c %U /etc/passwd", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [sandbox.user, sandbox.user, "root", "_apt", "root"]
    assert "/run/hpcctl" not in r.stdout
