"""Nothing in the job's environment steers root (issue 10, class 1).

The job's environment is the user's: every variable in it, Slurm's and PMIx's included, can be set with srun
--export. The plugin's root side must build the same container whatever they say (or refuse the step with one line):
the same mounts, the same devices, its state in the same root-only places.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import image, srun, work

pytestmark = pytest.mark.integration
__all__ = ["image", "work"]  # module fixtures

SHOW = "cat /proc/self/mountinfo; echo DEVICES; ls /dev; echo CACHE; ls -l /etc/ld.so.cache 2>&1; true"


def container_view(text: str) -> list[str]:
    """mountinfo without the ids and numbers that differ between any two steps, plus the rest as printed."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 6 and re.fullmatch(r"\d+", fields[0]) and "-" in fields:
            dash = fields.index("-")
            line = " ".join([fields[3], fields[4], *fields[dash + 1:dash + 3]])
        line = re.sub(r"/containers/\d+/", "/containers/JOB/", line)
        line = re.sub(r"\d+\.\d+(?=\s|$)", "JOB.STEP", line)
        line = re.sub(r"\w{3} +\d+ \d\d:\d\d", "", line)
        out.append(line)
    return sorted(out)


def view(sandbox, work, image, *args: str, export: dict[str, str] | None = None):
    exports = ",".join(f"{k}={v}" for k, v in (export or {}).items())
    flags = [f"--export=ALL,{exports}"] if exports else []
    return srun(sandbox, "-w", "n1", *flags, f"--container-image={image}", *args, "sh", "-c", SHOW, cwd=work)


HOSTILE = {
    "SLURMD_NODENAME": "../../../home/hpcuser/x",
    "SLURM_NODENAME": "/etc",
    "SLURM_STEP_NODELIST": "/etc",
    "SLURM_JOB_NODELIST": "n[1-2]/../../x",
    "SLURM_NODEID": "7",
    "SLURM_STEP_GPUS": "1",
    "SLURM_JOB_GPUS": "0:1",
    "CUDA_VISIBLE_DEVICES": "1",
    "GPU_DEVICE_ORDINAL": "1",
    "PMIX_SERVER_TMPDIR": "/etc",
    "PMIX_SERVER_URI2": "/root",
    "PMIX_NAMESPACE": "../../etc",
    "PMI_FD": "0",
    "SLURM_JOB_UID": "0",
    "SLURM_JOB_GID": "0",
    "SLURM_JOB_USER": "root",
    "SLURM_SUBMIT_DIR": "/root",
    "SLURM_CONF": "/home/hpcuser/slurm.conf",
    "SLURM_SPANK_HPCCTL_X": "/etc",
    "HPCCTL_SITE": "/home/hpcuser/site.yaml",
    "HPCCTL_CONFIG": "/home/hpcuser/site.yaml",
    "HPCCTL_RUNTIME_DIR": "/home/hpcuser",
    "HPCCTL_CACHE": "/home/hpcuser",
    "PYTHONPATH": "/home/hpcuser",
    "PYTHONHOME": "/home/hpcuser",
    "LD_PRELOAD": "/home/hpcuser/x.so",
    "LD_LIBRARY_PATH": "/home/hpcuser",
    "CUDA_DRIVER_LIBRARY": "/etc/shadow",
    "LONG": "x" * 100000,
}


def test_hostile_variables_leave_the_root_side_plan_unchanged(sandbox, work, image):
    baseline = view(sandbox, work, image, "--container-mpi=none")
    assert baseline.returncode == 0, baseline.stderr
    hostile = view(sandbox, work, image, "--container-mpi=none", export=HOSTILE)
    assert hostile.returncode == 0, hostile.stderr
    assert container_view(hostile.stdout) == container_view(baseline.stdout)


def test_hostile_variables_leave_the_mpi_plan_unchanged(sandbox, work, image):
    """With the site's MPI: PMIx directories and the linker cache come from the step's ids and slurm.conf."""
    baseline = view(sandbox, work, image, "--mpi=pmix")
    assert baseline.returncode == 0, baseline.stderr
    hostile = view(sandbox, work, image, "--mpi=pmix", export=HOSTILE)
    assert hostile.returncode == 0, hostile.stderr
    assert container_view(hostile.stdout) == container_view(baseline.stdout)
    assert " /etc " not in hostile.stdout and "/root" not in hostile.stdout


def test_pmix_server_tmpdir_cannot_bind_a_host_directory(sandbox, work, image):
    r = srun(sandbox, "-w", "n1", "--export=ALL,PMIX_SERVER_TMPDIR=/etc", f"--container-image={image}",
             "sh", "-c", "test -e /etc/shadow && echo HOST-ETC || echo image-etc", cwd=work)
    assert r.stdout.strip() == "image-etc", r.stderr


def test_nodename_cannot_move_root_state_into_the_users_directory(sandbox, work, image):
    target = work / "state"
    r = srun(sandbox, "-w", "n1", f"--export=ALL,SLURMD_NODENAME={target}", "--container-mpi=none",
             "--container-name=c1", f"--container-image={image}", "true", cwd=work)
    assert r.returncode == 0, r.stderr
    assert not target.exists() and list(work.glob("**/image.json")) == []


def test_gpu_variables_give_no_gpu_the_step_was_not_given(sandbox, work, image):
    r = srun(sandbox, "-w", "n1", "--export=ALL,SLURM_STEP_GPUS=0,SLURM_JOB_GPUS=0,CUDA_VISIBLE_DEVICES=0",
             "--container-mpi=none", f"--container-image={image}", "ls", "/dev", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "nvidia0" not in r.stdout.split()


def test_a_gpu_step_gets_its_own_gpu_not_the_one_its_environment_names(sandbox, work, image):
    """Host GPU 0 allocated (the sandbox's n1 has 0 and 1); the environment claims 1 as well."""
    r = srun(sandbox, "-w", "n1", "--gres=gpu:1", "--export=ALL,SLURM_STEP_GPUS=0,1,SLURM_JOB_GPUS=0,1",
             "--container-mpi=none", f"--container-image={image}", "sh", "-c",
             "ls /dev | grep nvidia; echo CVD=$CUDA_VISIBLE_DEVICES", cwd=work)
    assert r.returncode == 0, r.stderr
    devices = [line for line in r.stdout.split() if line.startswith("nvidia")]
    assert len(devices) == 1, r.stdout


def test_root_state_is_root_only(sandbox, work, image):
    srun(sandbox, "-w", "n1", "--container-mpi=none", "--container-name=c2", f"--container-image={image}", "true",
         cwd=work)
    runtime = Path("/run/hpcctl")
    assert runtime.stat().st_mode & 0o077 == 0 and runtime.stat().st_uid == 0
    r = sandbox.run(["ls", str(runtime)], user=sandbox.user, check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_no_variable_reaches_the_helpers_interpreter(sandbox, work, image, tmp_path):
    """PYTHON* and LD_* from the job never reach root's Python: a sitecustomize in the user's home would run."""
    marker = Path("/tmp") / "hpcctl-sitecustomize-ran"
    marker.unlink(missing_ok=True)
    site = work / "pyhook"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    subprocess.run(["chown", "-R", "hpcuser:hpcuser", str(site)], check=True)
    r = srun(sandbox, "-w", "n1", f"--export=ALL,PYTHONPATH={site},PYTHONSTARTUP={site}/sitecustomize.py",
             "--container-mpi=none", f"--container-image={image}", "true", cwd=work)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()


def slurm_step_variables(sandbox, work) -> list[str]:
    """Every SLURM_*, SLURMD_*, PMI*, PMIX_*, CUDA_* and GPU_* name a GPU + PMIx step's environment has."""
    r = srun(sandbox, "-w", "n1", "--gres=gpu:1", "--mpi=pmix", "env", cwd=work)
    names = {line.split("=", 1)[0] for line in r.stdout.splitlines() if "=" in line}
    return sorted(n for n in names if re.match(r"(SLURM|SLURMD|PMI|PMIX|CUDA|GPU)[A-Z0-9_]*$", n))


@pytest.mark.parametrize("value", ["/etc", "../../../root", "/home/hpcuser/" + "x" * 2000])
def test_every_slurm_pmix_and_cuda_variable_set_hostile_changes_nothing(sandbox, work, image, value):
    """Each variable Slurm, PMIx and the GPU plugin put in a step's environment, set by the user to a hostile value:
    the root side builds the same container (mounts, devices, linker cache) or refuses the step in one line."""
    names = slurm_step_variables(sandbox, work)
    assert len(names) > 40
    baseline = view(sandbox, work, image, "--gres=gpu:1", "--mpi=pmix")
    assert baseline.returncode == 0, baseline.stderr
    hostile = view(sandbox, work, image, "--gres=gpu:1", "--mpi=pmix", export={n: value for n in names})
    if hostile.returncode == 0:
        assert container_view(hostile.stdout) == container_view(baseline.stdout)
    else:
        errors = [line for line in hostile.stderr.splitlines() if "error" in line]
        assert len(errors) <= 2 and not any("Traceback" in line for line in hostile.stderr.splitlines()), \
            hostile.stderr
