"""What injection needs to know about one Slurm job step on one node, from trusted facts (see hpcctl.plugin.step)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
