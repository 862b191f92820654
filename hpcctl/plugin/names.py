"""Named containers (--container-name=NAME[:MODE]): the overlay's upper directory and the image are kept on the
node for later steps of the same job, and removed by the job epilog."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass

from hpcctl.errors import HpcctlError
from hpcctl.runtime.build import Image
from hpcctl.runtime.state import runtime_root
from hpcctl.site.config import SiteConfig


def job_dir(site: SiteConfig, job_id: str) -> str:
    return os.path.join(runtime_root(site.plugin.runtime_dir), "containers", str(int(job_id)))


@dataclass(frozen=True)
class Named:
    directory: str
    image: Image | None  # the image it was made from, when it exists

    @property
    def upper(self) -> str:
        return self.directory


HOLDER = "holder"  # "<pid> <starttime>" of the process that keeps the running container's mount namespace


def running(directory: str) -> dict | None:
    """{"pid", "start"} of the holder keeping this named container's mount namespace, while that very process (same
    pid and start time) still runs; the shim checks the start time again when it joins."""
    try:
        with open(os.path.join(directory, HOLDER)) as fh:
            pid, start = fh.read().split()
        with open(f"/proc/{int(pid)}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    return {"pid": int(pid), "start": start} if len(fields) > 19 and fields[19] == start else None


def _still_running(directory: str, grace_s: float = 2.0) -> bool:
    """Running, and not just a step that ended: its holder leaves when its slurmstepd does, shortly after srun
    returned."""
    deadline = time.monotonic() + grace_s
    while running(directory):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


def find(site: SiteConfig, job_id: str, node: str, uid: int, name: str, mode: str) -> Named:
    directory = os.path.join(job_dir(site, job_id), node, f"{uid}-{name}")
    meta = os.path.join(directory, "image.json")
    if mode == "create" and _still_running(directory):
        raise HpcctlError(f"--container-name: '{name}' is running in another step of this job on {node}",
                          f"join it with --container-name={name}:exec, or choose another name")
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
