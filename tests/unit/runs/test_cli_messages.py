"""What the job commands print for bad input that needs no cluster: one line naming the problem and the fix."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcctl.runs import bundle as bundles

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


@pytest.fixture
def env(tmp_path):
    """Runs bundles and user config under tmp_path; the sandbox site picked by HPCCTL_SITE."""
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "HPCCTL_SITE": "sandbox"}


def hpcctl(env, *args):
    return subprocess.run([sys.executable, "-m", "hpcctl", *args], capture_output=True, text=True, env=env,
                          cwd=REPO)


def error(result) -> str:
    assert result.returncode != 0 and result.stdout == "", result
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_render_names_the_jobs_of_a_pipeline(env):
    assert error(hpcctl(env, "render", str(EXAMPLES / "pipeline.yaml"), "--job", "nope")) == (
        f"hpcctl: error: no job named 'nope' in {EXAMPLES / 'pipeline.yaml'} (use one of: prepare, train, report)\n")


def test_timeout_needs_wait(env):
    assert error(hpcctl(env, "submit", str(EXAMPLES / "gpu.yaml"), "--timeout", "5")) == (
        "hpcctl: error: --timeout applies only while waiting (add --wait, or drop --timeout)\n")


def test_unknown_site(env):
    assert error(hpcctl(env, "--site", "nosuch", "render", str(EXAMPLES / "gpu.yaml"))) == (
        "hpcctl: error: unknown site 'nosuch' (known sites: gpu-ib-example, sandbox)\n")


def test_sbatch_missing_from_path(env):
    result = hpcctl({**env, "PATH": "/nonexistent"}, "submit", str(EXAMPLES / "gpu.yaml"))
    assert error(result) == "hpcctl: error: 'sbatch' not found (install the Slurm client commands or fix PATH)\n"
    assert not (Path(env["XDG_DATA_HOME"]) / "hpcctl" / "runs").exists() or \
        not any((Path(env["XDG_DATA_HOME"]) / "hpcctl" / "runs").iterdir())


def test_output_directory_that_cannot_be_made_is_one_line_and_nothing_is_queued(env, tmp_path):
    (tmp_path / "taken").write_text("a file, not a directory")
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: out\ncommand: 'true'\noutputs: {{stdout: {tmp_path}/taken/out.txt}}\n")
    result = hpcctl({**env, "PATH": "/nonexistent"}, "submit", str(spec))
    assert error(result) == (f"hpcctl: error: cannot make the output directory {tmp_path}/taken of job 'out': "
                             "File exists (set outputs.stdout and outputs.stderr to a directory you can write)\n")
    assert not (Path(env["XDG_DATA_HOME"]) / "hpcctl" / "runs").exists()


def test_broken_and_unfinished_run_bundles(env, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    assert error(hpcctl(env, "status", str(broken))).startswith(f"hpcctl: error: {broken}: not a run bundle (")
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    record = bundles.RunRecord(job_name="t", spec_file="/t.yaml", site="/s.yaml", cluster="sandbox",
                               hpcctl_version="0", workdir="/w", output="t-%j.out")
    unfinished = bundles.create("t", "name: t\n", {}, "#!/bin/sh\n", record)
    assert error(hpcctl(env, "logs", str(unfinished.path))) == (
        f"hpcctl: error: {unfinished.path}: the run bundle has no job id (submit the spec again)\n")


def test_user_defaults_reach_the_script_and_the_spec_wins(env, tmp_path):
    config = tmp_path / "config" / "hpcctl" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("defaults: {partition: debug, time: '00:20:00'}\n")
    script = hpcctl(env, "render", str(EXAMPLES / "gpu.yaml")).stdout
    assert "#SBATCH --partition=debug\n" in script and "#SBATCH --time=00:02:00\n" in script


def test_spec_limits_and_user_defaults_checked_together(env, tmp_path):
    config = tmp_path / "config" / "hpcctl" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("defaults: {partition: gpu}\n")
    result = hpcctl(env, "render", str(EXAMPLES / "gpu.yaml"))
    assert result.returncode == 2
    assert result.stderr == (f"hpcctl: error: {EXAMPLES / 'gpu.yaml'}:5: resources.partition: partition 'gpu' "
                             "does not exist on cluster 'sandbox' (your config default: `hpcctl config show`) "
                             f"(use one of: debug, scale) (site config: {REPO / 'site-configs' / 'sandbox.yaml'})\n")


def test_dry_run_warns_about_inherited_sbatch_variables(env):
    result = hpcctl({**env, "SBATCH_TIMELIMIT": "5"}, "submit", "--dry-run", str(EXAMPLES / "gpu.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("hpcctl: warning: SBATCH_TIMELIMIT=5 from your shell would change the time limit "
                             "(ignored; pass --keep-sbatch-env to apply it)\n")
    assert result.stdout.startswith("# sbatch --parsable <run bundle of gpu-check>/job.sh\n#!/bin/sh\n")
