"""`hpcctl run`: a job step's container on this machine, without Slurm, for admins debugging a site config and for
GPU checks on a node.

Slurm's part is emulated, so injection takes the path it takes in a job: the step's GPUs are GRES indices of a node
named in gres.conf, announced in SLURM_STEP_GPUS, SLURM_JOB_GPUS and CUDA_VISIBLE_DEVICES as Slurm sets them. The
container itself comes from the plugin's builder (hpcctl.container.container) and is executed by hpcctl-exec, the
plugin's C code as a standalone binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping

from hpcctl.container.access import Identity
from hpcctl.container.build import Image
from hpcctl.container.container import Container
from hpcctl.container.inject import gres
from hpcctl.container.options import is_file_reference
from hpcctl.container.sif_file import is_sif, sif_image
from hpcctl.container.state import runtime_root
from hpcctl.errors import HpcctlError
from hpcctl.site.config import SiteConfig

# What a login would set; the plan's operations (image ENV, site rules, injections) apply on top, as in a job.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FROM_CALLER = ("TERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ")
STATE_SUBDIR = "run"  # under the site's plugin.runtime_dir: plan files, the user's passwd/group for the container


def parse_gpus(value: str | None) -> tuple[int, ...]:
    """'2' -> the node's first two GPUs (0, 1); '3,1' or '3,' -> these GRES indices, in this order."""
    if value is None or value.strip() in ("", "0"):
        return ()
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        return tuple(range(int(text)))
    items = [v.strip() for v in text.split(",")]
    if items[-1] == "":
        items.pop()
    if not items or not all(re.fullmatch(r"\d+", v) for v in items):
        raise HpcctlError(f"--gpus: '{value}' is neither a count nor a list of GPU indices",
                          "write a count such as 2, or indices such as 1,3 (one index: 1,)")
    gpus = tuple(int(v) for v in items)
    if len(set(gpus)) != len(gpus):
        raise HpcctlError(f"--gpus: '{value}' names a GPU twice", "list each GPU index once")
    return gpus


def slurm_gpu_env(gpus: tuple[int, ...]) -> dict[str, str]:
    """The variables Slurm gives a step with these GRES indices (without ConstrainDevices)."""
    if not gpus:
        return {}
    listed = ",".join(map(str, gpus))
    return {"SLURM_STEP_GPUS": listed, "SLURM_JOB_GPUS": listed, "CUDA_VISIBLE_DEVICES": listed,
            "GPU_DEVICE_ORDINAL": listed}


def check_node_has_gpus(site: SiteConfig, node: str, gpus: tuple[int, ...]) -> None:
    """Refuse early, with the fix for `hpcctl run`, a node that gres.conf gives no GPU."""
    if not gpus or not site.gpu.gres_conf:
        return
    try:
        with open(site.gpu.gres_conf) as fh:
            files = gres.gpu_files(fh.read(), node)
    except OSError:
        return  # injection reports an unreadable gres.conf, naming the site config key
    if not files:
        raise HpcctlError(f"--gpus: node '{node}' has no GPUs in {site.gpu.gres_conf}",
                          "pass --node NAME of a node that gres.conf gives GPUs to")


def run_user(name: str | None, environ: Mapping[str, str]) -> pwd.struct_passwd:
    """--user, else the user who ran sudo, else root."""
    wanted = name or environ.get("SUDO_USER") or "root"
    try:
        return pwd.getpwuid(int(wanted)) if wanted.isdigit() else pwd.getpwnam(wanted)
    except KeyError:
        raise HpcctlError(f"--user: no user '{wanted}' on this machine",
                          "name a user that exists here: getent passwd NAME") from None


def identity(user: pwd.struct_passwd) -> Identity:
    """The user with every group, the primary one included, as Slurm gives a job's tasks."""
    return Identity(user.pw_uid, user.pw_gid, tuple(os.getgrouplist(user.pw_name, user.pw_gid)))


def start_env(user: pwd.struct_passwd, gpus: tuple[int, ...], keep: Iterable[str],
              environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the command starts from, before the plan's operations: a login's variables, the caller's
    terminal and locale, the variables named in --env with the caller's values, and Slurm's GPU variables."""
    env = {"PATH": DEFAULT_PATH, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}
    env.update({k: environ[k] for k in (*FROM_CALLER, *keep) if k in environ})
    env.update(slurm_gpu_env(gpus))
    return env


@contextlib.contextmanager
def opened_image(reference: str, site: SiteConfig, user: pwd.struct_passwd, progress: bool,
                 node: str | None = None) -> Iterator[Image]:
    """An unpacked root tree as is (as `hpcctl site explain` takes it; no squashfuse or pull needed), else the image
    pipeline's squashfs, pulled with the user's credentials into the cache of --node ``node`` (where the site has
    one per node) and held in use (cache gc leaves it) meanwhile."""
    if os.path.isdir(reference):
        yield Image(path=os.path.realpath(reference), reference=reference)
        return
    if is_file_reference(reference) and is_sif(reference):
        yield sif_image(os.path.abspath(reference), reference, identity(user))
        return
    from hpcctl.image import api
    from hpcctl.site.nodes import cache_node

    cached = api.ensure(reference, site, uid=user.pw_uid, gid=user.pw_gid, progress=progress,
                        node=cache_node(site, node))
    # the node cache's use locks are root's (a user's `hpcctl site explain` reads the image without holding one)
    with api.in_use(cached) if os.geteuid() == 0 else contextlib.nullcontext():
        yield Image.of_cached(cached, reference)


def state_dir(site: SiteConfig) -> str:
    path = os.path.join(runtime_root(site.plugin.runtime_dir), STATE_SUBDIR)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def exec_binary(site: SiteConfig) -> str:
    path = site.plugin.exec
    if not os.access(path, os.X_OK):
        raise HpcctlError(f"hpcctl-exec is not installed at {path}",
                          "build it with `make -C spank hpcctl-exec` and install it there with "
                          f"`install -D -m 0755 spank/hpcctl-exec {path}`, or set plugin.exec in {site.path}")
    return path


@contextlib.contextmanager
def _signals_to(process: subprocess.Popen) -> Iterator[None]:
    """While the command runs: the terminal's Ctrl-C and Ctrl-\\ reach it directly (hpcctl ignores them, as
    system() does); SIGTERM and SIGHUP sent to hpcctl are passed on."""
    handlers = {signal.SIGINT: signal.SIG_IGN, signal.SIGQUIT: signal.SIG_IGN,
                signal.SIGTERM: lambda sig, _: process.send_signal(sig),
                signal.SIGHUP: lambda sig, _: process.send_signal(sig)}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def execute(binary: str, container: Container, argv: list[str], env: Mapping[str, str], directory: str) -> int:
    """Run ``argv`` in ``container`` through hpcctl-exec; the command's exit status (128+N for signal N)."""
    fd, plan_file = tempfile.mkstemp(prefix="plan-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(container.to_dict(), fh)
        process = subprocess.Popen([binary, plan_file, "--", *argv], env=dict(env), cwd="/")
        with _signals_to(process):
            status = process.wait()
    finally:
        os.unlink(plan_file)
    return 128 - status if status < 0 else status


def step_container(site: SiteConfig, image: Image, options, user: pwd.struct_passwd, gpus: tuple[int, ...],
                   node: str, state: str) -> tuple[Container, dict[str, str]]:
    """The container a job step of ``user`` with these GPUs on ``node`` gets, from the plugin's builder, and the
    environment its command starts from: what `hpcctl run` executes and `hpcctl site explain` prints."""
    from hpcctl.container.build import StepFacts
    from hpcctl.container.container import build_container

    env = start_env(user, gpus, options.env, os.environ)
    step = StepFacts(who=identity(user), cwd=os.getcwd(), node=node, env=env, gpus=gpus)
    return build_container(site, image, options, step, state), env
