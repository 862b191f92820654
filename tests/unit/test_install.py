"""`pip install .` (not editable) gives a working hpcctl: templates and site configs come along."""

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_plain_install_renders_a_job_with_its_own_templates(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    deps = sysconfig.get_paths()["purelib"]  # yaml, jinja2 from the running environment; hpcctl from the new venv
    result = subprocess.run([str(venv / "bin/python"), "-m", "hpcctl", "render", "--site", "sandbox",
                             str(REPO / "examples/hello.yaml")], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": deps, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#!/bin/sh\n#SBATCH --job-name=hello\n")
    assert (venv / "share/hpcctl/templates/job.sh.j2").is_file()
