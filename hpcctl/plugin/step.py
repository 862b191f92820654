"""remote context (slurmstepd, once per step and node, as root): options + job facts -> MountPlan.

Request: {"options": {...}, "job": {uid, gid, groups, jobid, stepid, nodeid, batch, argv, env, host, cwd,
          stepd_pid},
          "pinned": "REF PIN"}
Reply: {"plan": MountPlan, "uid", "gid", "groups", "cwd", "remap_root", "fallback_dir", "hold",
        "named_dir": where the holder of a named container not running yet records itself,
        "join": {"pid", "start"} of the holder of a running one}
"""

from __future__ import annotations

import sys

from hpcctl.container import options
from hpcctl.container.access import Identity
from hpcctl.container.build import StepFacts
from hpcctl.container.container import build_container
from hpcctl.errors import HpcctlError
from hpcctl.plugin import gpus, images, names, node, warm
from hpcctl.plugin.protocol import serve
from hpcctl.site.config import SiteConfig


def pinned_for(pin: str | None, raw_image: str | None) -> str | None:
    """The submit-time pin "<reference> <pinned>" applies when the step asks for the same reference."""
    reference, _, pinned = (pin or "").partition(" ")
    return pinned if raw_image and reference == raw_image and pinned else None


def handle(request: dict, site: SiteConfig) -> dict:
    job = request["job"]
    env = warm.RecordingEnv(job.get("env") or {})
    cwd = job.get("cwd") or env.get("PWD") or "/"  # slurmstepd runs in the job's working directory
    raw = request.get("options") or {}
    opts = options.parse(raw, cwd)
    who = Identity(int(job["uid"]), int(job["gid"]), tuple(int(g) for g in job.get("groups") or ()))
    here = node.this_node(site.slurm.config_dir, job.get("host") or "", int(job.get("stepd_pid", 0)),
                          int(job["jobid"]), site.slurm.spool_for)
    reference = pinned_for(request.get("pinned"), raw.get("image")) or opts.image

    named = names.find(site, job["jobid"], here, who.uid, opts.name, opts.name_mode) if opts.name else None
    if named and named.image and reference and reference != named.image.reference:
        raise HpcctlError(f"--container-name: '{opts.name}' was made from {named.image.reference}, not {reference}",
                          f"drop --container-image, or replace it with --container-name={opts.name}:create")
    pinned_public = False
    if named and named.image:
        image = named.image
    elif reference:
        image, pinned_public = images.locate(reference, site, who, here, str(int(job["jobid"])))
    else:
        raise HpcctlError(f"--container-name: no container '{opts.name}' in this job yet",
                          "add --container-image=IMAGE to create it")
    if named and not named.image:
        names.remember(named, image)

    batch = bool(job.get("batch")) and bool(job.get("argv"))
    granted, gpu_checks = gpus.granted(site, here, env)
    step = StepFacts(who=who, cwd=cwd, node=here, env=env, batch_script=job["argv"][0] if batch else None,
                     job_id=str(int(job["jobid"])), step_id=str(int(job["stepid"])), slurm_commands=True,
                     gpus=granted)
    container = build_container(site, image, opts, step, names.node_state(site, here),
                                upper=named.upper if named else "")
    if env.get("HPCCTL_VERBOSE") != "1":
        container.plan.notes = []  # what was injected and why: shown on request, not in every job's error file
    # as in pyxis, a named container that runs in another step is joined (its mounts, not this step's); no_exec
    # makes a new container from its kept state
    live = names.running(named.directory) if named else None
    join = live if opts.name_mode in ("auto", "exec") else None
    reply = {**container.to_dict(), "remap_root": opts.remap_root, "hold": image.hold,
             "named_dir": (None if live else named.directory) if named else names.unnamed(
                 site, job["jobid"], job["stepid"], here, who.uid, image),
             "join": join,
             # pyxis' --container-workdir: the task changes there and fails when it is missing, nothing creates it
             "plan": {**container.plan.to_dict(), "workdir": ""}, "workdir": opts.workdir or "",
             "entrypoint_log": opts.entrypoint_log,
             # the container is saved once, by the first node of the step (every node writing one path would race)
             "save": opts.save if int(job.get("nodeid", 0)) == 0 else None}
    reply["warm"] = warm.record(site, opts, image, reply, env, pinned_public=pinned_public, batch=batch,
                                job_step=f"{int(job['jobid'])}.{int(job['stepid'])}", gpu_checks=gpu_checks,
                                records=names.records_root(site), plans=names.plans_dir(site), node=here,
                                image_json=names.image_record(image))
    return reply


if __name__ == "__main__":
    sys.exit(serve(handle))
