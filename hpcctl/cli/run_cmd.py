"""`hpcctl run`: run an image on this machine with the mount plan a job step would get (admins, root)."""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex

from hpcctl.cli.output import print_json
from hpcctl.cli.site_cmd import print_plan
from hpcctl.errors import HpcctlError

DESCRIPTION = """\
Run CMD in IMAGE on this machine, without Slurm, in exactly the container a job step gets from the plugin: the
image's squashfs under an overlay, the site's mounts, the user's home, the host GPU driver stack and MPI injected
from the site config, the image's and the site's environment. For admins checking a site config on a node (GPU
devices, nvidia-smi, host MPI) and debugging what a job sees. Needs root; the command runs as --user with
no_new_privs, in the directory you run hpcctl from when the container has it (as srun does)."""

EPILOG = """\
GPUs: --gpus 2 gives the node's first two GPUs (GRES indices 0 and 1), --gpus 3,1 these two; --node picks whose
gres.conf entry (gpu.gres_conf) says which device files they are. The command sees SLURM_STEP_GPUS and
CUDA_VISIBLE_DEVICES as in a job, renumbered from 0 as the plugin does.

Environment: the command starts from PATH, HOME, USER, LOGNAME, the caller's TERM and locale, and the variables
listed in --env (with the caller's values, kept over the image's); then the image's ENV, the site's rules and the
injections apply, as in a job.

Exit status: the command's (128+N when killed by signal N); 1 when hpcctl refuses (bad option, image, mount);
125 when the container cannot be set up, 126 when CMD cannot be run, 127 when it is not found.

Examples:
  sudo hpcctl run 127.0.0.1:5000/hpcctl/busybox:latest id
  sudo hpcctl run --gpus 1 --mpi none nvcr.io#nvidia/cuda:12.4.1-base-ubuntu22.04 nvidia-smi
  sudo hpcctl run --user alice --mounts /scratch/alice:/data:ro ./image.sqsh -- ls -l /data
  sudo hpcctl run --plan-only --json --gpus 2 ubuntu:22.04 > plan.json"""

# Messages from the plugin's code name its --container-* options; here they are the same options without the prefix.
_RUN_OPTIONS = re.compile(r"--container-(mounts|workdir|env|mpi|entrypoint|writable|readonly)\b")


def register(sub) -> None:
    run = sub.add_parser("run", help="run an image here with a job step's mount plan (root; admins, GPU checks)",
                         description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--gpus", metavar="N|LIST",
                     help="GPUs the step gets: a count (the node's first N) or GRES indices such as 1,3 (one: 1,)")
    run.add_argument("--node", metavar="NAME", help="node whose GPUs and Slurm directories to use "
                                                    "(default: this host's short name)")
    run.add_argument("--mpi", metavar="NAME|none", help="host MPI flavour to inject, as --container-mpi "
                                                        "(default: the site's; none: the image's own MPI)")
    run.add_argument("--user", metavar="NAME", help="run as this user (default: $SUDO_USER, else root)")
    run.add_argument("--mounts", metavar="SRC:DST[:ro],...",
                     help="extra mounts, as --container-mounts; checked against the site's user_mounts policy")
    run.add_argument("--workdir", metavar="DIR", help="working directory in the container, as --container-workdir")
    run.add_argument("--env", metavar="NAME,...",
                     help="pass these variables from your environment, kept over the image's (--container-env)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--writable", dest="writable", action="store_const", const=True,
                      help="a writable root (tmpfs overlay, discarded at exit)")
    mode.add_argument("--readonly", dest="writable", action="store_const", const=False,
                      help="a read-only root (default: the site's plugin.writable)")
    run.add_argument("--entrypoint", action=argparse.BooleanOptionalAction,
                     help="run the image's ENTRYPOINT before CMD (default: the site's plugin.entrypoint)")
    run.add_argument("--plan-only", action="store_true", help="print the container's plan instead of running it")
    run.add_argument("--json", action="store_true",
                     help="with --plan-only: print the document hpcctl-exec reads, as JSON")
    run.add_argument("-v", "--verbose", action="store_true", help="print the injection notes before running")
    run.add_argument("image", metavar="IMAGE",
                     help="registry reference, enroot form (REGISTRY#IMAGE), dockerd://IMAGE, oras://IMAGE, a "
                          "squashfs or .sif file, or an unpacked root tree (a directory)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD [ARG...]",
                     help="command to run (default: the image's CMD; a .sif's runscript); put -- before it when it "
                          "starts with -")
    run.set_defaults(func=run_image)


@contextlib.contextmanager
def _named_as_run_options():
    try:
        yield
    except HpcctlError as exc:
        exc.problem = _RUN_OPTIONS.sub(r"--\1", exc.problem)
        exc.fix = exc.fix and _RUN_OPTIONS.sub(r"--\1", exc.fix)
        raise


def _raw_options(args, image_path: str) -> dict:
    raw = {"image": image_path}
    for key in ("mounts", "workdir", "env", "mpi"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    for key in ("writable", "entrypoint"):
        if getattr(args, key) is not None:
            raw[key] = "1" if getattr(args, key) else "0"
    return raw


def _command(args, config, entrypoint: list[str]) -> list[str]:
    command = args.command or list(config.get("Cmd") or [])
    if not command and not entrypoint:
        raise HpcctlError(f"no command to run: {args.image} has no CMD", "give one after the image, e.g. -- sh")
    return command


def run_image(args) -> int:
    import os
    import socket

    from hpcctl.container import local, options
    from hpcctl.site import select

    if args.json and not args.plan_only:
        raise HpcctlError("--json prints the plan: it needs --plan-only", "add --plan-only, or drop --json")
    if os.geteuid() != 0:
        raise HpcctlError("hpcctl run must run as root: it mounts the image and then becomes the user",
                          "run it with sudo; the command then runs as you, or as --user NAME")
    site = select.load(args.site)
    user = local.run_user(args.user, os.environ)
    gpus = local.parse_gpus(args.gpus)
    node = args.node or socket.gethostname().split(".")[0]
    local.check_node_has_gpus(site, node, gpus)
    binary = None if args.plan_only else local.exec_binary(site)
    with local.opened_image(args.image, site, user, not args.plan_only, args.node) as image, _named_as_run_options():
        opts = options.parse(_raw_options(args, image.path), os.getcwd())
        container, env = local.step_container(site, image, opts, user, gpus, node, local.state_dir(site))
        command = _command(args, image.config, container.plan.entrypoint)
        if args.plan_only:
            _print_plan(container, args, user.pw_name, node, gpus, opts.mpi or site.mpi.default, command)
            return 0
        if not args.verbose:
            container.plan.notes = []
        return local.execute(binary, container, command, env, local.state_dir(site))


def _print_plan(container, args, user: str, node: str, gpus: tuple[int, ...], mpi: str | None,
                command: list[str]) -> None:
    if args.json:
        print_json({**container.to_dict(), "command": command})
        return
    plan = container.plan
    where = plan.workdir or f"{container.cwd} (if missing in the container: {container.fallback_dir})"
    print(f"Container for {args.image} on node {node}: user {user} ({container.who.uid}:{container.who.gid}), "
          f"GPUs {','.join(map(str, gpus)) or 'none'}, MPI {mpi or 'none'}")
    print(f"  image file: {plan.image}")
    print(f"  root: {'writable' if plan.writable else 'read-only'}; working directory: {where}")
    print(f"  command: {shlex.join([*plan.entrypoint, *command])}")
    print_plan(plan)
