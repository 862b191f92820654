"""The shell a .sif's container runs first (hpcctl.container.singularity): every value reaches the environment as
it is, whatever quotes or expansions it holds, and Slurm's variables come out as they went in."""

from __future__ import annotations

import subprocess

import pytest

from hpcctl.container import singularity
from hpcctl.container.plan import EnvOp

HOSTILE = ["plain", "it's", 'a "quoted" $(touch /tmp/x) `id` ${HOME} \\n', "new\nline", ""]


def run(script: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["/bin/sh", "-c", script + '\nenv -0'], env=env, capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


@pytest.mark.parametrize("value", HOSTILE)
def test_each_operation_sets_exactly_the_value(value):
    ops = [EnvOp("set", "A", value), EnvOp("prepend", "P", value), EnvOp("append", "Q", value),
           EnvOp("unset", "GONE")]
    script = "\n".join(filter(None, map(singularity._statement, ops)))
    env = run(script, {"PATH": "/usr/bin:/bin", "P": "old", "Q": "old", "GONE": "1"})
    assert (env["A"], env["P"], env["Q"], "GONE" in env) == (value, f"{value}:old", f"old:{value}", False)


def test_names_a_shell_cannot_export_are_left_to_the_plan():
    assert singularity._statement(EnvOp("set", "A.B", "x")) is None
    assert singularity._statement(EnvOp("set", "A;rm -rf /", "x")) is None


def test_the_sif_path_reaches_apptainers_variables_unexpanded():
    path = "/home/u/$(id)`id`.sif"
    ops = singularity.apptainer_env(path)
    env = run("\n".join(map(singularity._statement, ops)), {"PATH": "/usr/bin:/bin"})
    assert (env["APPTAINER_CONTAINER"], env["SINGULARITY_NAME"]) == (path, "$(id)`id`.sif")


def test_slurms_variables_come_out_as_they_went_in():
    """The entrypoint's own lines, around a stand-in for the image's scripts that overwrites and adds Slurm
    variables (the real scripts are sourced from /.singularity.d/env inside the container)."""
    shell = singularity.entrypoint([EnvOp("set", "PMIX_MCA_gds", "hash")], runscript=False)[2]
    scripts = f'for script in {singularity.ENV_DIR}/*.sh; do if [ -f "$script" ]; then . "$script"; fi; done'
    assert shell.count(scripts) == 1
    shell = shell.replace(scripts, "export SLURM_JOB_ID=evil SLURM_NEW=1 CUDA_VISIBLE_DEVICES=9 FROM_SCRIPT=yes")
    shell = shell.replace('exec "$@"', "")
    env = run(shell, {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert (env["SLURM_JOB_ID"], env["CUDA_VISIBLE_DEVICES"], env["FROM_SCRIPT"], env["PMIX_MCA_gds"]) == (
        "42", "0,1", "yes", "hash")
    assert "SLURM_NEW" not in env and not any(name.startswith("hpcctl_") for name in env)
    assert env["PATH"] == singularity.DEFAULT_PATH  # Apptainer's default, not the host's


def test_container_env_names_keep_the_users_values_over_the_scripts():
    """As the plugin's entrypoint machinery does for srun, so `hpcctl run` (which execs through this shell) agrees:
    a --container-env name the user set keeps its value; one the user did not set takes the scripts'."""
    shell = singularity.entrypoint([], runscript=False, keep=["MINE", "UNSET_BY_ME", "not a name"])[2]
    scripts = f'for script in {singularity.ENV_DIR}/*.sh; do if [ -f "$script" ]; then . "$script"; fi; done'
    shell = shell.replace(scripts, "export MINE=image UNSET_BY_ME=image OTHER=image").replace('exec "$@"', "")
    env = run(shell, {"PATH": "/usr/bin:/bin", "MINE": "mine", "OTHER": "host"})
    assert (env["MINE"], env["UNSET_BY_ME"], env["OTHER"]) == ("mine", "image", "image")
