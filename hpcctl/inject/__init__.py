"""What a step's container gets from the host: GPU driver stack and MPI, decided from the site config.

``plan_injections`` is the entry point the SPANK plugin and `hpcctl site explain` call; its result goes into the
step's MountPlan. Pure decisions: it reads the host and the image, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from hpcctl.inject import gpu, mpi
from hpcctl.inject.injection import Injection
from hpcctl.inject.step import StepInfo
from hpcctl.site.config import SiteConfig

if TYPE_CHECKING:  # the facts are read by hpcctl.runtime, which builds on this package
    from hpcctl.runtime.image_facts import ImageFacts

__all__ = ["Injection", "StepInfo", "plan_injections"]


def plan_injections(site: SiteConfig, step: StepInfo, facts: ImageFacts,
                    image_env: Mapping[str, str] | None = None) -> Injection:
    """Mounts and environment for ``step``'s container; ``facts``: what was read from its image.

    ``image_env``: the image's configured environment, so image-set NVIDIA_* variables are dropped without a GPU.
    Raises HpcctlError for what the user must fix (an unknown MPI flavour, an ABI-incompatible image).
    """
    out = Injection()
    for part in (gpu.plan(site, step, image_env), mpi.plan(site, step, facts)):
        out.add(part)
    return out
