"""Pick the Slurm backend: pyslurm when a build for the installed Slurm's major.minor imports, else commands."""

from __future__ import annotations

import importlib
import re
import subprocess

from hpcctl.slurm.commands import CommandBackend


def _major_minor(text: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def installed_slurm_version() -> tuple[int, int] | None:
    """From `sinfo --version` ("slurm 22.05.8")."""
    try:
        out = subprocess.run(["sinfo", "--version"], capture_output=True, encoding="utf-8", errors="replace",
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _major_minor(out)


def select_backend() -> CommandBackend:
    try:
        module = importlib.import_module("pyslurm")
    except ImportError:
        return CommandBackend()
    # pyslurm numbers its releases after Slurm's: 22.5.x is for Slurm 22.05
    built_for = _major_minor(getattr(module, "__version__", ""))
    if built_for is None or built_for != installed_slurm_version():
        return CommandBackend()
    from hpcctl.slurm.pyslurm_backend import PyslurmBackend

    return PyslurmBackend(module)
