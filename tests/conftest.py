"""Shared fixtures. Integration tests (marker `integration`) run real jobs on the sandbox cluster as hpcuser."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: runs real jobs on the sandbox cluster (needs root)")


def hpcctl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpcctl", *args]


@dataclass
class Job:
    id: str
    state: str
    exit_code: str
    output: str


class Sandbox:
    """The running sandbox cluster, and helpers to act on it as its unprivileged user."""

    user = "hpcuser"
    registry = "127.0.0.1:5000"
    auth_registry = "127.0.0.1:5001"
    auth_user = "sandbox"
    auth_password = "sandbox-secret"

    def run(self, cmd, user: str | None = None, check: bool = True, timeout: float = 60,
            input: str | None = None, env: dict | None = None, cwd: str | os.PathLike | None = None):
        """Run ``cmd`` (list, or a string for bash -c); as ``user`` through runuser with a login-like env."""
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if user:
            extra = [f"{k}={v}" for k, v in (env or {}).items()]
            argv = ["runuser", "-u", user, "--", "env", f"HOME=/home/{user}", f"USER={user}", *extra, *argv]
            env = None
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                                env={**os.environ, **env} if env else None, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                                 f"stderr:\n{result.stderr}")
        return result

    def workdir(self) -> Path:
        base = Path(f"/home/{self.user}/hpcctl-tests")
        base.mkdir(exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="t-", dir=base))
        subprocess.run(["chown", "-R", f"{self.user}:{self.user}", str(base)], check=True)
        return path

    def job_state(self, job_id: str) -> tuple[str, str]:
        out = self.run(["scontrol", "-o", "show", "job", job_id], check=False).stdout
        state = re.search(r"JobState=(\S+)", out)
        code = re.search(r"ExitCode=(\S+)", out)
        return (state.group(1) if state else "UNKNOWN", code.group(1) if code else "")

    def wait(self, job_id: str, timeout: float = 180) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state, code = self.job_state(job_id)
            if state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"):
                return state, code
            time.sleep(0.3)
        self.run(["scancel", job_id], check=False)
        raise AssertionError(f"job {job_id} still {state} after {timeout} s; cancelled")

    def sbatch(self, script: str, *args: str, user: str | None = "hpcuser", timeout: float = 180) -> Job:
        """Submit ``script`` with sbatch from a fresh workdir, wait for the end, return state and output."""
        work = self.workdir()
        (work / "job.sh").write_text(script)
        subprocess.run(["chown", f"{self.user}:{self.user}", str(work / "job.sh")], check=True)
        out = work / "slurm-%j.out"
        result = self.run(["sbatch", "--parsable", f"--output={out}", *args, "job.sh"], user=user,
                          cwd=work, check=False)
        if result.returncode != 0:
            raise AssertionError(f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
        job_id = result.stdout.strip().split(";")[0]
        state, code = self.wait(job_id, timeout)
        path = work / f"slurm-{job_id}.out"
        return Job(job_id, state, code, path.read_text() if path.exists() else "")


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root: they bring the sandbox cluster up (hpcctl sandbox up)")
    result = subprocess.run(hpcctl_cmd("sandbox", "up", "--quiet"), capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"hpcctl sandbox up failed:\n{result.stdout}\n{result.stderr}")
    return Sandbox()
