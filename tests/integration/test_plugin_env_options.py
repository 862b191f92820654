"""Every --container-* option can also come from the environment, as pyxis' PYXIS_CONTAINER_* (or HPCCTL_CONTAINER_*)
variables; the command line wins over the variable. Mirrors pyxis' tests/env_vars.bats."""

import pytest

from tests.integration.plugin_helpers import MARKER, NO_MPI, build_image, entrypoint_image, srun

pytestmark = pytest.mark.integration
__all__ = ["entrypoint_image"]  # module fixture


@pytest.fixture(scope="module")
def work(sandbox):
    path = sandbox.workdir()
    for name in ("env-mnt", "cli-mnt"):
        (path / name).mkdir()
    sandbox.run(["chown", "-R", f"{sandbox.user}:{sandbox.user}", str(path)])
    return path


@pytest.fixture(scope="module")
def image(work):
    return str(build_image(work))



def run(sandbox, work, env, *args):
    r = srun(sandbox, NO_MPI, *args, cwd=work, env=env)
    return r.returncode, r.stdout.strip(), r.stderr


def test_image_from_the_environment(sandbox, work, image):
    code, out, err = run(sandbox, work, {"PYXIS_CONTAINER_IMAGE": image}, "cat", "/etc/marker")
    assert (code, out) == (0, MARKER), err
    code, out, err = run(sandbox, work, {"HPCCTL_CONTAINER_IMAGE": image}, "cat", "/etc/marker")
    assert (code, out) == (0, MARKER), err
    code, out, err = run(sandbox, work, {"PYXIS_CONTAINER_IMAGE": image},
                         f"--container-image={sandbox.registry}/hpcctl/busybox:latest", "sh", "-c",
                         "cat /etc/marker 2>/dev/null || echo busybox")
    assert (code, out) == (0, "busybox"), err


def test_mounts_from_the_environment(sandbox, work, image):
    env = {"PYXIS_CONTAINER_MOUNTS": f"{work}/env-mnt:/env-mnt"}
    code, out, err = run(sandbox, work, env, f"--container-image={image}", "sh", "-c",
                         "grep -c ' /env-mnt ' /proc/self/mounts")
    assert (code, out) == (0, "1"), err
    code, out, err = run(sandbox, work, env, f"--container-image={image}", f"--container-mounts={work}/cli-mnt:/cli",
                         "sh", "-c", "grep -c ' /cli ' /proc/self/mounts; grep -c ' /env-mnt ' /proc/self/mounts")
    assert out.split() == ["1", "0"], err


def test_workdir_from_the_environment(sandbox, work, image):
    env = {"PYXIS_CONTAINER_WORKDIR": "/opt/suid"}
    assert run(sandbox, work, env, f"--container-image={image}", "pwd")[1] == "/opt/suid"
    assert run(sandbox, work, env, f"--container-image={image}", "--container-workdir=/etc", "pwd")[1] == "/etc"


@pytest.mark.parametrize("env, args, expected", [
    ({"PYXIS_CONTAINER_MOUNT_HOME": "0"}, [], "absent"),
    ({"PYXIS_CONTAINER_MOUNT_HOME": "0"}, ["--container-mount-home"], "mounted"),
    ({"PYXIS_CONTAINER_MOUNT_HOME": "1"}, ["--no-container-mount-home"], "absent"),
])
def test_mount_home_from_the_environment(sandbox, work, image, env, args, expected):
    code, out, err = run(sandbox, "/tmp", env, f"--container-image={image}", *args, "sh", "-c",
                         f"grep -q ' /home/{sandbox.user} ' /proc/self/mounts && echo mounted || echo absent")
    assert (code, out) == (0, expected), err


@pytest.mark.parametrize("env, args, expected", [
    ({"PYXIS_CONTAINER_REMAP_ROOT": "1"}, [], "0"),
    ({"PYXIS_CONTAINER_REMAP_ROOT": "0"}, [], "2001"),
    ({"PYXIS_CONTAINER_REMAP_ROOT": "1"}, ["--no-container-remap-root"], "2001"),
])
def test_remap_root_from_the_environment(sandbox, work, image, env, args, expected):
    code, out, err = run(sandbox, work, env, f"--container-image={image}", *args, "id", "-u")
    assert (code, out) == (0, expected), err


@pytest.mark.parametrize("env, args, expected", [
    ({"PYXIS_CONTAINER_ENTRYPOINT": "1"}, [], ["task", "yes"]),
    ({"PYXIS_CONTAINER_ENTRYPOINT": "0"}, [], ["task"]),
    ({"PYXIS_CONTAINER_ENTRYPOINT": "0"}, ["--container-entrypoint"], ["task", "yes"]),
])
def test_entrypoint_from_the_environment(sandbox, work, entrypoint_image, env, args, expected):
    code, out, err = run(sandbox, work, env, f"--container-image={entrypoint_image}", *args, "sh", "-c",
                         "echo task $ENTRYPOINT_RAN")
    assert (code, out.split()) == (0, expected), err


@pytest.mark.parametrize("env, args, expected", [
    ({"PYXIS_CONTAINER_WRITABLE": "1"}, [], "wrote"),
    ({"PYXIS_CONTAINER_WRITABLE": "0"}, [], "read-only"),
    ({"PYXIS_CONTAINER_WRITABLE": "1"}, ["--container-readonly"], "read-only"),
    ({"PYXIS_CONTAINER_READONLY": "1"}, [], "read-only"),
    ({"PYXIS_CONTAINER_READONLY": "0"}, [], "wrote"),
    ({"PYXIS_CONTAINER_READONLY": "1"}, ["--container-writable"], "wrote"),
])
def test_writable_and_readonly_from_the_environment(sandbox, work, image, env, args, expected):
    code, out, err = run(sandbox, work, env, f"--container-image={image}", *args, "sh", "-c",
                         "touch /tmp/newfile 2>/dev/null && echo wrote || echo read-only")
    assert (code, out) == (0, expected), err


def test_env_from_the_environment(sandbox, work):
    image = f"--container-image={sandbox.registry}/hpcctl/busybox:latest"
    host = {"HPCCTL_TEST_IMAGE": "host", "MY_VAR": "mine"}
    show = ["sh", "-c", "echo $HPCCTL_TEST_IMAGE"]
    assert run(sandbox, work, host, image, *show)[1] == "busybox"  # the image's value wins by default
    assert run(sandbox, work, {**host, "PYXIS_CONTAINER_ENV": "HPCCTL_TEST_IMAGE"}, image, *show)[1] == "host"
    assert run(sandbox, work, {**host, "PYXIS_CONTAINER_ENV": "HPCCTL_TEST_IMAGE"}, image, "--container-env=MY_VAR",
               *show)[1] == "busybox"


def test_name_from_the_environment(sandbox, image):
    job = sandbox.sbatch("#!/bin/sh\n"
                         f"PYXIS_CONTAINER_NAME=envname srun --container-image={image} {NO_MPI} "
                         "sh -c 'echo from-env > /tmp/state'\n"
                         f"PYXIS_CONTAINER_NAME=envname srun --container-name=cliname --container-image={image} "
                         f"{NO_MPI} sh -c 'echo from-cli > /tmp/state'\n"
                         f"srun --container-name=envname {NO_MPI} cat /tmp/state\n"
                         f"srun --container-name=cliname {NO_MPI} cat /tmp/state\n")
    assert job.state == "COMPLETED", job.output
    assert job.output.split() == ["from-env", "from-cli"]


def test_bad_value_in_the_environment_is_one_line(sandbox, work, image):
    code, out, err = run(sandbox, work, {"PYXIS_CONTAINER_WRITABLE": "maybe"}, f"--container-image={image}", "true")
    assert code != 0
    assert err.strip() == "srun: error: --container-writable: 'maybe' is not a yes/no value (set the variable to " \
                          "1 or 0)", err
