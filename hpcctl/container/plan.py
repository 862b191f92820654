"""The mount plan: everything a task's container gets, decided in Python before any syscall.

Data flows one way: image cache -> MountPlan -> the C shim, which only executes it. Each entry says why it is there,
so `hpcctl site explain` can print the plan a job would get.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class PlanMount:
    """One mount inside the container. ``kind``: bind (host path), dev (a bind that keeps device nodes usable),
    tmpfs (``options`` as for mount -o; default mode=1777), symlink (``source`` is the link's text), or umount
    (what is mounted at ``target`` is detached, last)."""

    source: str
    target: str
    kind: str = "bind"
    readonly: bool = True
    create: str = "auto"  # dir | file | auto: what to create in the overlay when the target is missing
    why: str = ""
    as_user: bool = False  # a user's path: opened with the user's file-system ids, symlinks refused
    options: str = ""  # tmpfs mount options
    flags: tuple[str, ...] = ()  # noexec, bind (not recursive), a propagation (private, slave, shared, unbindable)
    late: bool = False  # mounted after the container's linker cache is built (/proc, /sys: nothing root does on
    # image content may reach the host through them)

    def to_dict(self) -> dict:
        return {**asdict(self), "flags": list(self.flags)}


@dataclass(frozen=True)
class EnvOp:
    """An environment change applied in order: set, prepend or append (with ':'), or unset."""

    op: str
    name: str
    value: str = ""
    why: str = ""


@dataclass
class MountPlan:
    image: str  # path of the squashfs (or directory) used as the container's root
    image_user_file: bool = False  # the user named it: opened with the user's rights
    image_offset: int = 0  # where the squashfs starts in the image file (a .sif's system partition)
    image_size: int = 0  # its length in bytes; 0: to the end of the file
    image_open_as: tuple[int, int] | None = None  # (uid, gid) whose rights open the image (the shared store's owner)
    owner_idmap: bool = False  # the image's root-owned files appear owned by the job's user (id-mapped lower)
    mounts: list[PlanMount] = field(default_factory=list)
    env: list[EnvOp] = field(default_factory=list)
    ldconfig: bool = False  # rebuild the container's linker cache (as the job's user; bound over /etc/ld.so.cache)
    ldconfig_dirs: list[str] = field(default_factory=list)  # directories it scans besides ldconfig's own
    notes: list[str] = field(default_factory=list)
    writable: bool = True  # False: the root is remounted read-only once the mount points exist
    upper: str = ""  # persistent overlay upper directory (named containers); "" = a tmpfs for this step
    staging: str = "/run/hpcctl/mnt"  # host directory a private tmpfs is mounted on while building the root
    workdir: str = ""  # --container-workdir; "" = the job's working directory
    entrypoint: list[str] = field(default_factory=list)  # run before the command when non-empty
    ldconfig_bin: str = "/sbin/ldconfig"  # the host's (static) ldconfig, run inside the container
    unshare: list[str] = field(default_factory=list)  # namespaces of the step's own: net (loopback up), ipc, uts

    def to_dict(self) -> dict:
        return {"image": self.image, "image_user_file": self.image_user_file, "image_offset": self.image_offset,
                "image_size": self.image_size, "owner_idmap": self.owner_idmap,
                "image_open_as": {"uid": self.image_open_as[0], "gid": self.image_open_as[1]}
                if self.image_open_as else None,
                "mounts": [m.to_dict() for m in self.mounts], "env": [asdict(e) for e in self.env],
                "ldconfig": self.ldconfig,
                "ldconfig_dirs": list(self.ldconfig_dirs), "notes": self.notes,
                "writable": self.writable, "upper": self.upper, "staging": self.staging, "workdir": self.workdir,
                "entrypoint": list(self.entrypoint), "ldconfig_bin": self.ldconfig_bin,
                "unshare": list(self.unshare)}
