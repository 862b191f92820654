"""Named containers (--container-name=NAME[:MODE]): the overlay's upper directory and the image are kept on the
node for later steps of the same job, and removed by the job epilog.

As in pyxis, an unnamed container is named after its job and step (JOBID.STEPID): other steps can join it while it
runs; once its step ended it no longer exists under that name (pyxis removes it with the step)."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass

from hpcctl.container.build import Image
from hpcctl.container.state import runtime_root
from hpcctl.errors import HpcctlError
from hpcctl.site.config import SiteConfig


def records_root(site: SiteConfig) -> str:
    """Where the jobs' container records live: JOBID/NODE/UID-NAME below it (the shim's warm path makes an unnamed
    step's record there itself, in this layout)."""
    return os.path.join(runtime_root(site.plugin.runtime_dir), "containers")


def node_state(site: SiteConfig, node: str) -> str:
    """Root's files for every job's containers on ``node`` (the users' passwd/group, remap-root's apt setting):
    named by their content, so steps of any job that get the same file share it and a kept reply stays valid."""
    return os.path.join(runtime_root(site.plugin.runtime_dir), "identity", node)


def plans_dir(site: SiteConfig) -> str:
    """Where the shim keeps replies for later steps of the same shape (spank/plan_cache.c)."""
    return os.path.join(runtime_root(site.plugin.runtime_dir), "plans")


def job_dir(site: SiteConfig, job_id: str) -> str:
    return os.path.join(records_root(site), str(int(job_id)))


@dataclass(frozen=True)
class Named:
    directory: str
    image: Image | None  # the image it was made from, when it exists

    @property
    def upper(self) -> str:
        return self.directory


HOLDER = "holder"  # "<pid> <starttime>" of the process that keeps the running container's mount namespace
UNNAMED = "unnamed"  # marks the record of an unnamed container, which lasts only while its step runs


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


def _tasks_inside(holder: int) -> bool:
    """Whether a process other than the holder is in the holder's mount namespace: a step's tasks."""
    try:
        namespace = os.readlink(f"/proc/{holder}/ns/mnt")
    except OSError:
        return False
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            if pid != holder and os.readlink(f"/proc/{pid}/ns/mnt") == namespace:
                return True
        except OSError:
            continue
    return False


def _still_running(directory: str, grace_s: float = 2.0) -> bool:
    """Its holder lives and a step's tasks are in its mount namespace. A holder alone is a step that ended (the
    holder leaves when its slurmstepd does, shortly after srun returned) or one whose tasks are about to join: that
    is waited for, at most ``grace_s``."""
    deadline = time.monotonic() + grace_s
    while live := running(directory):
        if _tasks_inside(live["pid"]):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return False


def _directory(site: SiteConfig, job_id: str, node: str, uid: int, name: str) -> str:
    return os.path.join(job_dir(site, job_id), node, f"{uid}-{name}")


def find(site: SiteConfig, job_id: str, node: str, uid: int, name: str, mode: str) -> Named:
    directory = _directory(site, job_id, node, uid, name)
    meta = os.path.join(directory, "image.json")
    if os.path.exists(os.path.join(directory, UNNAMED)) and not _still_running(directory):
        shutil.rmtree(directory, ignore_errors=True)
    if mode == "create" and _still_running(directory):
        raise HpcctlError(f"--container-name: '{name}' is running in another step of this job on {node}",
                          f"join it with --container-name={name}:exec, or choose another name")
    if mode == "exec" and not _still_running(directory):
        raise HpcctlError(f"--container-name: '{name}' is not running in this job on {node}",
                          "start it in another step first, or drop :exec to start it from its kept state")
    if mode == "create" and os.path.isdir(directory):
        shutil.rmtree(directory)
    if not os.path.exists(meta):
        return Named(directory, None)
    with open(meta) as fh:
        data = json.load(fh)
    return Named(directory, Image(path=data["path"], reference=data["reference"], config=data.get("config") or {},
                                  hold=data.get("hold"), user_file=bool(data.get("user_file")),
                                  offset=int(data.get("offset") or 0), size=int(data.get("size") or 0),
                                  open_as=tuple(data["open_as"]) if data.get("open_as") else None))


def unnamed(site: SiteConfig, job_id: str, step_id: str, node: str, uid: int, image: Image) -> str:
    """Record the step's unnamed container as JOBID.STEPID; returns the directory its holder records itself in."""
    named = Named(_directory(site, job_id, node, uid, f"{int(job_id)}.{int(step_id)}"), None)
    os.makedirs(named.directory, mode=0o700, exist_ok=True)
    with open(os.path.join(named.directory, UNNAMED), "w"):
        pass
    remember(named, image)
    return named.directory


def remember(named: Named, image: Image) -> None:
    os.makedirs(named.directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(named.directory, ".image.json.tmp")
    with open(tmp, "w") as fh:
        fh.write(image_record(image))
    os.replace(tmp, os.path.join(named.directory, "image.json"))


def image_record(image: Image) -> str:
    """A container record's image.json: the image it runs (read back by find())."""
    return json.dumps({"path": image.path, "reference": image.reference, "config": dict(image.config),
                       "hold": image.hold, "user_file": image.user_file, "offset": image.offset, "size": image.size,
                       "open_as": list(image.open_as) if image.open_as else None})


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
