"""`pip install .` (not editable) gives a working hpcctl: templates and site configs come along."""

import os
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


def test_a_listing_piped_into_a_reader_that_has_gone_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `hpcctl schema | head -1` once head has exited
    result = subprocess.run([sys.executable, "-m", "hpcctl", "schema"], stdout=write_end, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
