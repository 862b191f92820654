"""The step's GPUs, checked against the step's device cgroup.

Slurm tells a step its GPUs only through the job's environment (SLURM_STEP_GPUS, SLURM_JOB_GPUS,
CUDA_VISIBLE_DEVICES), which the user can set. Those indices are a request: a GPU is taken only when the process,
which runs in the step's cgroup, may open its device (the kernel's device controller answers access(2) for device
files, in cgroup v1 and v2), so a step gets no GPU that Slurm did not give it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from hpcctl.container.inject.gpu import device_files
from hpcctl.errors import HpcctlError
from hpcctl.site.config import SiteConfig

# Host GPU indices, most specific first. With ConstrainDevices=yes Slurm numbers CUDA_VISIBLE_DEVICES from 0 on
# every node, while SLURM_STEP_GPUS / SLURM_JOB_GPUS keep the node's GRES index that says which device is meant.
GPU_ENV = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES")


def parse_gpu_list(value: str) -> tuple[int, ...]:
    """'3,1,5' -> (3, 1, 5); UUIDs, 'NoDevFiles' and empty values give ()."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items or not all(re.fullmatch(r"\d+", v) for v in items):
        return ()
    return tuple(int(v) for v in items)


def requested(env: Mapping[str, str]) -> tuple[int, ...]:
    """GRES indices the job's environment names, most specific variable first."""
    for name in GPU_ENV:
        if name in env:
            return parse_gpu_list(env[name])
    return ()


def granted(site: SiteConfig, node: str, env: Mapping[str, str]) -> tuple[tuple[int, ...], list[tuple[str, bool]]]:
    """The requested GPUs whose device this step's cgroup lets it open, in the requested order; and each device
    file tested with what access(2) said."""
    wanted = requested(env)
    if not wanted:
        return (), []
    try:
        files = device_files(site, node, wanted)
    except HpcctlError:
        return (), []
    checks = [(path, os.access(path, os.R_OK | os.W_OK)) for path in files]
    return tuple(index for index, (_, ok) in zip(wanted, checks) if ok), checks
