"""What a step's container gets from the host: GPU driver stack and MPI, decided from the site config.

``plan_injections`` is the entry point the SPANK plugin and `hpcctl site explain` call; its result goes into the
step's MountPlan. Pure decisions: it reads the host and the image, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hpcctl.inject import gpu, mpi
from hpcctl.inject.step import StepInfo
from hpcctl.runtime.plan import EnvOp, PlanMount
from hpcctl.site.config import SiteConfig

__all__ = ["Injection", "StepInfo", "plan_injections"]


@dataclass
class Injection:
    mounts: list[PlanMount] = field(default_factory=list)
    env: list[EnvOp] = field(default_factory=list)
    ldconfig: bool = False  # rebuild the container's linker cache in the overlay
    notes: list[str] = field(default_factory=list)


def plan_injections(site: SiteConfig, step: StepInfo, rootfs: str,
                    image_env: Mapping[str, str] | None = None) -> Injection:
    """Mounts and environment for ``step``'s container whose root tree is at ``rootfs``.

    ``image_env``: the image's configured environment, so image-set NVIDIA_* variables are dropped without a GPU.
    Raises HpcctlError for what the user must fix (an unknown MPI flavour, an ABI-incompatible image).
    """
    parts = [gpu.plan(site, step, image_env), mpi.plan(site, step, rootfs)]
    out = Injection()
    targets: set[str] = set()
    for part in parts:
        for mount in part.mounts:
            if mount.target not in targets:
                targets.add(mount.target)
                out.mounts.append(mount)
        out.env += [op for op in part.env if op not in out.env]
        out.ldconfig = out.ldconfig or part.ldconfig
        out.notes += part.notes
    return out
