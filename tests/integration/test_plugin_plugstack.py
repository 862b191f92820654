"""Site defaults from plugstack.conf arguments (pyxis' names where pyxis has one): they win over the site config,
and the user's --container-* options win over them. srun and slurmstepd read plugstack.conf at every step."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CONF = Path("/etc/slurm/plugstack.conf.d/hpcctl.conf")
IMAGE = "--container-image=127.0.0.1:5000/hpcctl/busybox:latest"


@pytest.fixture
def plugstack_args(sandbox):
    original = CONF.read_text()

    def use(*args: str) -> None:
        CONF.write_text(original.rstrip("\n") + " " + " ".join(args) + "\n")
    yield use
    CONF.write_text(original)


def _srun(sandbox, *args: str):
    return sandbox.run(["srun", "--container-mpi=none", "--container-workdir=/", IMAGE, *args], user=sandbox.user,
                       check=False, timeout=120, cwd=sandbox.workdir())


def test_plugstack_defaults_apply_and_the_users_options_win(sandbox, plugstack_args):
    marker = sandbox.workdir() / "marker"
    marker.write_text("from the host\n")
    probe = ("sh", "-c", f"cat {marker} 2>/dev/null || echo not mounted")
    assert _srun(sandbox, *probe).stdout == "from the host\n"  # the sandbox site mounts home by default
    plugstack_args("mount_home=0")
    assert _srun(sandbox, *probe).stdout == "not mounted\n"
    assert _srun(sandbox, "--container-mount-home", *probe).stdout == "from the host\n"


def test_a_bad_plugstack_argument_is_one_line_naming_it(sandbox, plugstack_args):
    plugstack_args("mount_home=maybe")
    result = _srun(sandbox, "true")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == (
        "srun: error: plugstack.conf argument 'mount_home=maybe' is not valid (write execute_entrypoint=0|1 or "
        "mount_home=0|1 or writable=0|1, or runtime_path=/ABSOLUTE/PATH)")
