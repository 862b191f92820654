"""The entry point of injection: the GPU and MPI parts of a step's container, combined."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from hpcctl.container.inject import gpu, mpi
from hpcctl.container.inject.injection import Injection
from hpcctl.container.inject.step import StepInfo
from hpcctl.site.config import SiteConfig

if TYPE_CHECKING:  # the facts are read by hpcctl.container, which builds on this package
    from hpcctl.container.image_facts import ImageFacts


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
