"""A real Docker daemon (Debian's docker.io) for the tests that need one, on the socket and data root given, with
the network left alone; stopped again afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def running_dockerd(root: Path, host: str, group: str | None = None) -> Iterator[str]:
    """dockerd listening on ``host`` (unix://PATH), its state under ``root``; ``group``: the socket's group."""
    if not shutil.which("dockerd"):
        pytest.fail("dockerd is not installed: the install step must add Debian's docker.io")
    argv = ["dockerd", "--host", host, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "dockerd.pid"), "--bridge=none", "--iptables=false", "--ip-forward=false",
            "--ip-masq=false", *(["--group", group] if group else [])]
    with open(root / "dockerd.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        env = {**os.environ, "DOCKER_HOST": host}
        while subprocess.run(["docker", "version"], capture_output=True, env=env).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start: {(root / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
