"""`hpcctl site explain`: the mounts and environment a job would get on a node, each with the reason for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from hpcctl.inject import Injection, StepInfo, plan_injections
from hpcctl.inject.mpi import select
from hpcctl.runtime.plan import EnvOp, PlanMount
from hpcctl.runtime.site_mounts import plan_mount
from hpcctl.site.config import SiteConfig

if TYPE_CHECKING:  # the facts are read by hpcctl.runtime, which builds on this package
    from hpcctl.runtime.image_facts import ImageFacts


@dataclass
class Explanation:
    node: str
    image: str
    gpus: tuple[int, ...]
    mpi: str | None
    mounts: list[PlanMount] = field(default_factory=list)
    env: list[EnvOp] = field(default_factory=list)
    ldconfig: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"node": self.node, "image": self.image, "gpus": list(self.gpus), "mpi": self.mpi,
                "mounts": [m.to_dict() for m in self.mounts], "env": [asdict(e) for e in self.env],
                "ldconfig": self.ldconfig, "notes": self.notes}


def site_entries(site: SiteConfig, node: str) -> Injection:
    """What every container gets: the runtime's base mounts (private /dev, /proc, /sys), the site config's mounts
    and its environment rules."""
    from hpcctl.runtime.build import BASE_MOUNTS

    out = Injection(mounts=list(BASE_MOUNTS))
    out.mounts += filter(None, (plan_mount(m, node, "site mount (mounts:)", "mounts") for m in site.mounts))
    rules = site.environment
    for op, values in (("set", rules.set), ("prepend", rules.prepend), ("append", rules.append)):
        out.env += [EnvOp(op, k, v, f"site environment.{op}") for k, v in values.items()]
    out.env += [EnvOp("unset", k, why="site environment.unset") for k in rules.unset]
    return out


def explain(site: SiteConfig, facts: ImageFacts, image: str, node: str, gpus: int, mpi: str | None,
            image_env: Mapping[str, str] | None = None) -> Explanation:
    """The plan of a step on ``node`` with ``gpus`` GPUs (GRES indices 0..gpus-1) and MPI flavour ``mpi``;
    ``facts``: what was read from the image."""
    flavour = select(site, mpi)
    step = StepInfo(node=node, job_id="<job>", step_id="<step>", uid=0, gid=0, gpus=tuple(range(gpus)),
                    mpi=mpi or (flavour.name if flavour else "none"))
    base = site_entries(site, node)
    injected = plan_injections(site, step, facts, image_env)
    return Explanation(node, image, step.gpus, flavour.name if flavour else None,
                       base.mounts + injected.mounts, base.env + injected.env, injected.ldconfig, injected.notes)
