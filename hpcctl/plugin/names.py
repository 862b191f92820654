"""Named containers (--container-name=NAME[:MODE]): the overlay's upper directory and the image are kept on the
node for later steps of the same job, and removed by the job epilog."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

from hpcctl.errors import HpcctlError
from hpcctl.runtime.build import Image
from hpcctl.site.config import SiteConfig


def job_dir(site: SiteConfig, job_id: str) -> str:
    return os.path.join(site.plugin.runtime_dir, "containers", str(job_id))


@dataclass(frozen=True)
class Named:
    directory: str
    image: Image | None  # the image it was made from, when it exists

    @property
    def upper(self) -> str:
        return self.directory


def find(site: SiteConfig, job_id: str, node: str, uid: int, name: str, mode: str) -> Named:
    directory = os.path.join(job_dir(site, job_id), node, f"{uid}-{name}")
    meta = os.path.join(directory, "image.json")
    if mode == "create" and os.path.isdir(directory):
        shutil.rmtree(directory)
    if not os.path.exists(meta):
        if mode in ("exec", "no_exec"):
            raise HpcctlError(f"--container-name: no container '{name}' in this job on {node}",
                              "create it first with --container-name=NAME and --container-image=IMAGE")
        return Named(directory, None)
    with open(meta) as fh:
        data = json.load(fh)
    return Named(directory, Image(path=data["path"], reference=data["reference"], config=data.get("config") or {},
                                  hold=data.get("hold")))


def remember(named: Named, image: Image) -> None:
    os.makedirs(named.directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(named.directory, ".image.json.tmp")
    with open(tmp, "w") as fh:
        json.dump({"path": image.path, "reference": image.reference, "config": dict(image.config),
                   "hold": image.hold}, fh)
    os.replace(tmp, os.path.join(named.directory, "image.json"))


def remove_job(site: SiteConfig, job_id: str) -> bool:
    """Remove what the job kept on this node. Nodes that share the runtime directory (the sandbox's slurmd run on
    one host) run their epilogs at the same moment: the rename makes exactly one of them do the removal."""
    directory = job_dir(site, job_id)
    doomed = f"{directory}.removing.{os.getpid()}"
    try:
        os.rename(directory, doomed)
    except FileNotFoundError:
        return False
    shutil.rmtree(doomed)
    return True
