"""Build a step's MountPlan: image, the container's base mounts, site mounts, Slurm's files, home, user mounts,
host injections (GPU, MPI) and the environment. Shared by the SPANK plugin and `hpcctl run`."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hpcctl.container import singularity, slurm_client
from hpcctl.container.access import Identity, examine
from hpcctl.container.environment import LOCALE_WHY, compose, image_env
from hpcctl.container.image_facts import ImageFacts
from hpcctl.container.inject.layout import LIBDIR, REMAP_ROOT_APT_CONF
from hpcctl.container.options import SPECIAL_SOURCES, ContainerOptions
from hpcctl.container.plan import EnvOp, MountPlan, PlanMount
from hpcctl.container.policy import check_source
from hpcctl.container.site_mounts import carried_flags, plan_mount
from hpcctl.errors import HpcctlError
from hpcctl.site.config import SiteConfig

# A fresh /dev (a tmpfs) with only the harmless host devices: the container never sees, nor creates files in, the
# host's /dev. GPUs and fabric devices are added by injection, and the job's device cgroup still decides what opens.
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty", "ptmx")
_DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"), ("/proc/self/fd/1", "/dev/stdout"),
              ("/proc/self/fd/2", "/dev/stderr"))
BASE_MOUNTS = (
    PlanMount("tmpfs", "/dev", kind="tmpfs", readonly=False, create="dir", options="mode=0755,size=65536k",
              why="a private /dev: basic devices and the step's injected ones only"),
    *(PlanMount(f"/dev/{name}", f"/dev/{name}", kind="dev", readonly=False, create="file", why="basic device")
      for name in _DEV_NODES),
    PlanMount("/dev/pts", "/dev/pts", kind="dev", readonly=False, create="dir", why="pseudo-terminals (srun --pty)"),
    PlanMount("/dev/shm", "/dev/shm", readonly=False, create="dir",
              why="POSIX shared memory (MPI's shared-memory transport)"),
    *(PlanMount(source, target, kind="symlink", create="file", why="standard link") for source, target in _DEV_LINKS),
    PlanMount("/proc", "/proc", readonly=False, create="dir", late=True, why="processes (host pid namespace)"),
    PlanMount("/sys", "/sys", readonly=True, create="dir", late=True, why="devices and cgroups, read-only"),
)


def _order(mount: PlanMount) -> tuple[bool, int]:
    """Late mounts last: while root creates mount points and builds the linker cache (paths the image's symlinks
    may redirect), /proc's magic links (/proc/1/root ...) into the host are not reachable."""
    return mount.late, _depth(mount)


@dataclass(frozen=True)
class Image:
    path: str  # squashfs file (or root directory)
    reference: str  # what the user asked for, pinned when known
    config: Mapping = field(default_factory=dict)  # OCI config: Env, Entrypoint, Cmd, WorkingDir, User
    hold: str | None = None  # file to keep a shared flock on while the step runs, so cache gc leaves the image
    user_file: bool = False  # a file the user named: opened with the user's rights, never root's
    offset: int = 0  # a .sif: where its system partition (the squashfs) starts in ``path``
    size: int = 0  # and its length; 0 for a plain squashfs file
    open_as: tuple[int, int] | None = None  # (uid, gid) whose rights open ``path``: the shared store's owner

    @property
    def sif(self) -> bool:
        return self.offset > 0

    @classmethod
    def of_cached(cls, cached, reference: str) -> "Image":
        """The image a node cache entry (hpcctl.image.cache.CachedImage) gives; one without a digest is a squashfs
        (or .sif) file the user named, which the cache only looked at."""
        return cls(path=str(cached.path), reference=reference, config=cached.config.to_dict(),
                   hold=cached.lock_path, user_file=not cached.digest, offset=cached.offset,
                   size=cached.size if cached.offset else 0, open_as=cached.open_as)


@dataclass(frozen=True)
class StepFacts:
    who: Identity
    cwd: str
    node: str
    env: Mapping[str, str] = field(default_factory=dict)
    batch_script: str | None = None  # the batch step's script in the slurmd spool, bound in read-only
    job_id: str = "0"
    step_id: str = "0"
    slurm_commands: bool = False  # bind the host's srun, sbatch ... in (the SPANK plugin's steps)
    gpus: tuple[int, ...] = ()  # GRES indices of the step's GPUs on this node, checked against a trusted source


def _depth(mount: PlanMount) -> int:
    return len([p for p in mount.target.split("/") if p])


def _home(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


def _injections(site: SiteConfig, image: Image, options: ContainerOptions, step: StepFacts, facts: ImageFacts):
    from hpcctl.container.inject import gpu
    from hpcctl.container.inject.plan import plan_injections
    from hpcctl.container.inject.step import StepInfo

    info = StepInfo(node=step.node, job_id=step.job_id, step_id=step.step_id, uid=step.who.uid, gid=step.who.gid,
                    gpus=step.gpus, mpi=options.mpi, env=step.env)
    if not info.gpus and (options.mpi or site.mpi.default) in (None, "none"):
        return gpu.plan(site, info, image_env(image.config))  # no GPU: only drops the image's NVIDIA_* settings
    return plan_injections(site, info, facts, image_env(image.config))


def build_plan(site: SiteConfig, image: Image, options: ContainerOptions, step: StepFacts, facts: ImageFacts,
               upper: str = "", extra: Sequence[PlanMount] = ()) -> MountPlan:
    mounts = [*BASE_MOUNTS, *extra]
    mounts += filter(None, (plan_mount(m, step.node, "site mount", "mounts") for m in site.mounts))
    mounts += [PlanMount(path, path, readonly=True, create="file", why="host name resolution (plugin.host_files)")
               for path in site.plugin.host_files if os.path.exists(path)]
    if step.slurm_commands:
        mounts += slurm_client.mounts(site.slurm.config_dir, site.plugin.runtime_dir)
    if step.batch_script:
        mounts.append(PlanMount(step.batch_script, step.batch_script, readonly=True, create="file",
                                why="the batch script, so it runs inside the container"))
    mount_home = site.plugin.mount_home if options.mount_home is None else options.mount_home
    home = _home(step.who.uid) if mount_home else None
    if home and os.path.isdir(home):
        mounts.append(PlanMount(home, "/root" if options.remap_root else home, readonly=False, create="dir",
                                as_user=True, why="home directory" + (" at /root (--container-remap-root)"
                                                                      if options.remap_root else "")))
    seen = examine([um.source for um in options.mounts if um.source not in SPECIAL_SOURCES], step.who)
    for um in options.mounts:
        if um.source in SPECIAL_SOURCES:
            mounts.append(PlanMount(um.source, um.target, kind=um.source, readonly=um.readonly, create="dir",
                                    options=um.tmpfs_options, flags=carried_flags(um.flags),
                                    why=f"--container-mounts {um.source}"))
            continue
        real = check_source(um.source, site.user_mounts, seen[um.source][0])
        # always recursive: root cloning only the top mount would show what the host's submounts cover
        mounts.append(PlanMount(real, um.target, readonly=um.readonly, create=um.create, as_user=True,
                                flags=tuple(f for f in carried_flags(um.flags) if f != "bind"),
                                why=f"--container-mounts {um.source}"))
    for source, (_, problem) in seen.items():
        if problem:
            raise HpcctlError(f"--container-mounts: {source} {problem}",
                              "mount only paths that exist and that you can read")

    extra_env = [EnvOp("set", "HOME", "/root", "--container-remap-root: root's home"),
                 EnvOp("set", "APT_CONFIG", REMAP_ROOT_APT_CONF, "--container-remap-root: apt stays root")
                 ] if options.remap_root else []
    injection = _injections(site, image, options, step, facts)
    notes: list[str] = []
    ldconfig = False
    if injection:
        mounts += injection.mounts
        extra_env += injection.env
        notes += injection.notes
        ldconfig = injection.ldconfig
    mounts.sort(key=_order)

    if image.sif:
        extra_env = [*singularity.apptainer_env(image.path), *extra_env]
    env = compose(image_env(image.config), site.environment, options.env, extra_env)
    entrypoint_on = site.plugin.entrypoint if options.entrypoint is None else options.entrypoint
    entrypoint = list((image.config or {}).get("Entrypoint") or []) if entrypoint_on else []
    if image.sif:  # the image's environment scripts always apply; its runscript with --container-entrypoint
        entrypoint = singularity.entrypoint([op for op in env if op.why != LOCALE_WHY],
                                            runscript=options.entrypoint is True, keep=options.env)
    writable = site.plugin.writable if options.writable is None else options.writable
    return MountPlan(image=image.path, image_user_file=image.user_file, image_offset=image.offset,
                     image_size=image.size, image_open_as=image.open_as, owner_idmap=step.who.uid != 0,
                     mounts=mounts, env=env, ldconfig=ldconfig,
                     ldconfig_dirs=[*facts.ld_dirs, LIBDIR] if ldconfig else [], notes=notes, writable=writable,
                     upper=upper, staging=os.path.join(site.plugin.runtime_dir, "mnt"),
                     workdir=options.workdir or "", entrypoint=entrypoint, ldconfig_bin=site.gpu.ldconfig,
                     unshare=list(options.unshare))
