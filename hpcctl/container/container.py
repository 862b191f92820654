"""A step's container as the C side executes it: the MountPlan plus who runs in it and where. One builder for the
SPANK plugin's step helper and for `hpcctl run`, so both get the same container from the same inputs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hpcctl.container import image_facts
from hpcctl.container.access import Identity
from hpcctl.container.build import Image, StepFacts, build_plan
from hpcctl.container.identity import identity_mounts
from hpcctl.container.image_facts import ImageFacts
from hpcctl.container.inject.layout import REMAP_ROOT_APT_CONF
from hpcctl.container.inject.mpi import image_linkers
from hpcctl.container.options import ContainerOptions
from hpcctl.container.plan import MountPlan, PlanMount
from hpcctl.container.state import publish
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


APT_AS_ROOT = 'APT::Sandbox::User "root";\n'


def remap_root_mounts(state_dir: str) -> list[PlanMount]:
    """With --container-remap-root, apt keeps its downloads as (mapped) root: dropping to _apt cannot succeed in a
    user namespace that maps one id, and apt checks that it did. Given through APT_CONFIG (a file apt reads after
    its own), so the image's /etc stays as it is."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = publish(state_dir, "apt-remap-root.conf", APT_AS_ROOT)
    return [PlanMount(path, REMAP_ROOT_APT_CONF, readonly=True, create="file",
                      why="--container-remap-root: apt's downloads stay root in the user namespace")]


def read_image(site: SiteConfig, image: Image, options: ContainerOptions, who: Identity) -> ImageFacts:
    """What the plan needs from inside the image, read as ``who`` (see hpcctl.container.image_facts)."""
    return image_facts.read(image.path, who, image_linkers(site, options.mpi), site.gpu.ldconfig,
                            os.path.join(site.plugin.runtime_dir, "inspect"), user_file=image.user_file,
                            offset=image.offset, size=image.size, open_as=image.open_as)


def build_container(site: SiteConfig, image: Image, options: ContainerOptions, step: StepFacts, state_dir: str,
                    upper: str = "") -> Container:
    """``state_dir``: a root-only directory for the user's passwd/group files (reused by later steps and runs of
    the same user and image); ``upper``: a persistent overlay upper directory (named containers)."""
    who = step.who
    facts = read_image(site, image, options, who)
    extra = remap_root_mounts(state_dir) if options.remap_root else identity_mounts(facts, who.uid, who.gid,
                                                                                      who.groups, state_dir)
    plan = build_plan(site, image, options, step, facts, upper=upper, extra=extra)
    return Container(plan, who, step.cwd, (image.config or {}).get("WorkingDir") or "/")
