"""What injection needs to know about one Slurm job step on one node, read from the task's environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# The plugin's --container-mpi option as Slurm exports it into the job (see the SPANK notes in machine-facts).
MPI_OPTION_ENV = "SLURM_SPANK__SLURM_SPANK_OPTION_hpcctl_container_mpi"
# Host GPU indices, most specific first. With ConstrainDevices=yes Slurm numbers CUDA_VISIBLE_DEVICES from 0 on
# every node, while SLURM_STEP_GPUS / SLURM_JOB_GPUS keep the node's GRES index that says which device is meant.
GPU_ENV = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES")


def parse_gpu_list(value: str) -> tuple[int, ...]:
    """'3,1,5' -> (3, 1, 5); UUIDs, 'NoDevFiles' and empty values give ()."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items or not all(re.fullmatch(r"\d+", v) for v in items):
        return ()
    return tuple(int(v) for v in items)


@dataclass(frozen=True)
class StepInfo:
    node: str
    job_id: str
    step_id: str
    uid: int
    gid: int
    gpus: tuple[int, ...] = ()  # host GRES indices, in Slurm's order
    mpi: str | None = None  # flavour chosen with --container-mpi; None: the site default
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_environ(cls, env: Mapping[str, str], node: str, mpi: str | None = None) -> "StepInfo":
        gpus: tuple[int, ...] = ()
        for name in GPU_ENV:
            if name in env:
                gpus = parse_gpu_list(env[name])
                break
        return cls(
            node=node,
            job_id=env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID", "0"),
            step_id=env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID", "0"),
            uid=int(env.get("SLURM_JOB_UID", os.getuid())),
            gid=int(env.get("SLURM_JOB_GID", os.getgid())),
            gpus=gpus,
            mpi=mpi or env.get(MPI_OPTION_ENV) or None,
            env=dict(env),
        )
