"""A step's container as the C side executes it: the MountPlan plus who runs in it and where. One builder for the
SPANK plugin's step helper and for `hpcctl run`, so both get the same container from the same inputs."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from hpcctl.plugin.access import Identity
from hpcctl.plugin.options import ContainerOptions
from hpcctl.inject.mpi import image_linkers
from hpcctl.runtime import image_facts
from hpcctl.runtime.build import Image, StepFacts, build_plan
from hpcctl.runtime.image_facts import ImageFacts
from hpcctl.runtime.identity import identity_mounts
from hpcctl.runtime.plan import MountPlan
from hpcctl.site.config import SiteConfig


@dataclass
class Container:
    plan: MountPlan
    who: Identity
    cwd: str  # the working directory the task starts in, when the container has it
    fallback_dir: str  # where it starts otherwise: the image's WorkingDir, else /

    def to_dict(self) -> dict:
        """The document plan_from_json (spank/plan_exec.c) reads."""
        return {"plan": self.plan.to_dict(), "uid": self.who.uid, "gid": self.who.gid,
                "groups": list(self.who.groups), "cwd": self.cwd, "fallback_dir": self.fallback_dir}


def _key(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def read_image(site: SiteConfig, image: Image, options: ContainerOptions, who: Identity) -> ImageFacts:
    """What the plan needs from inside the image, read as ``who`` (see hpcctl.runtime.image_facts)."""
    return image_facts.read(image.path, who, image_linkers(site, options.mpi), site.gpu.ldconfig,
                            os.path.join(site.plugin.runtime_dir, "inspect"), user_file=image.user_file)


def build_container(site: SiteConfig, image: Image, options: ContainerOptions, step: StepFacts, state_dir: str,
                    upper: str = "") -> Container:
    """``state_dir``: a root-only directory for the user's passwd/group files (reused by later steps and runs of
    the same user and image); ``upper``: a persistent overlay upper directory (named containers)."""
    who = step.who
    facts = read_image(site, image, options, who)
    identity = [] if options.remap_root else identity_mounts(
        facts, who.uid, who.gid, who.groups,
        os.path.join(state_dir, f"identity-{who.uid}-{_key(image.path)}"))
    plan = build_plan(site, image, options, step, facts, upper=upper, extra=identity)
    return Container(plan, who, step.cwd, (image.config or {}).get("WorkingDir") or "/")
