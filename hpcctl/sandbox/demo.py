"""`hpcctl sandbox demo`: the first job a new user runs: a containerized GPU job on the sandbox, as hpcuser."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from hpcctl.errors import HpcctlError
from hpcctl.sandbox import layout as L

IMAGE = f"{L.REGISTRY}/hpcctl/busybox:latest"
SCRIPT = """#!/bin/sh
echo "job $SLURM_JOB_ID on $SLURMD_NODENAME as $(id -un)"
echo "image: $(grep ^NAME= /etc/os-release 2>/dev/null || echo none)"
echo "GPUs: CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
"""


def run_demo(timeout: int = 300) -> str:
    """Submit the demo job, wait for its end, return its output; raise when it did not complete."""
    base = Path(f"/home/{L.TEST_USER}")
    work = Path(tempfile.mkdtemp(prefix="hpcctl-demo-", dir=base))
    script = work / "demo.sh"
    script.write_text(SCRIPT)
    subprocess.run(["chown", "-R", f"{L.TEST_USER}:{L.TEST_USER}", str(work)], check=True)
    output = work / "demo.out"
    cmd = ["runuser", "-u", L.TEST_USER, "--", "sbatch", "--wait", "--parsable", "--job-name=hpcctl-demo",
           f"--output={output}", "--gres=gpu:1", f"--container-image={IMAGE}", str(script)]
    result = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", cwd=work, timeout=timeout)
    text = output.read_text(errors="replace") if output.exists() else ""
    if result.returncode != 0:
        raise HpcctlError(f"demo job failed: {(result.stderr.strip() or text.strip()).splitlines()[-1:]}",
                          f"see {output} and `hpcctl sandbox status`")
    return f"$ {' '.join(cmd[4:])}\n{text}"
