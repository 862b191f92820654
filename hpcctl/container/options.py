"""The --container-* options as the user wrote them (command line or HPCCTL_/PYXIS_CONTAINER_*), validated.

Meanings follow pyxis, so job scripts move between clusters unchanged. Every problem is one HpcctlError line
naming the option and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hpcctl.errors import HpcctlError

NAME_MODES = ("auto", "create", "exec", "no_exec")
MOUNT_FLAGS = {"ro", "rw", "bind", "rbind", "private", "rprivate", "slave", "rslave", "shared", "rshared",
               "unbindable", "runbindable", "nosuid", "nodev", "noexec", "x-create=dir", "x-create=file",
               "x-create=auto"}
TMPFS_OPTIONS = re.compile(r"(size|nr_blocks|nr_inodes|mode|huge)=[A-Za-z0-9_%]+")  # tmpfs's own, as mount -o
SPECIAL_SOURCES = ("tmpfs", "umount")  # a fresh tmpfs; an unmount of what is at DST (pyxis' x-detach)
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# [USER@][REGISTRY#]IMAGE[:TAG][@sha256:HEX], after docker:// is stripped
_REFERENCE = re.compile(r"(?:[^@/#\s]+@)?(?:[A-Za-z0-9.-]+(?::\d+)?[#/])?[a-z0-9]+(?:[._/-]+[a-z0-9]+)*"
                        r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")


@dataclass(frozen=True)
class UserMount:
    source: str  # absolute host path, "tmpfs" or "umount"
    target: str
    readonly: bool = False
    create: str = "auto"
    flags: tuple[str, ...] = ()  # every flag given, in order (the plan carries those the C side applies)
    tmpfs_options: str = ""  # size=..., mode=..., as mount -o takes them


@dataclass(frozen=True)
class ContainerOptions:
    image: str | None = None
    mounts: tuple[UserMount, ...] = ()
    workdir: str | None = None
    name: str | None = None
    name_mode: str = "auto"
    env: tuple[str, ...] = ()  # on a node: only the names the job's environment has (the others keep the image's)
    mount_home: bool | None = None  # None: the site default
    remap_root: bool = False
    entrypoint: bool | None = None
    entrypoint_log: bool = False
    writable: bool | None = None
    mpi: str | None = None
    unshare: tuple[str, ...] = ()  # namespaces of the step's own (pyxis' --container-unshare): net, ipc, uts
    save: str | None = None  # --container-save: where the container's state is written as squashfs at step end

    @property
    def image_is_file(self) -> bool:
        return bool(self.image) and is_file_reference(self.image)


def is_file_reference(image: str) -> bool:
    """pyxis' rule: a value starting with / or . names a squashfs file, anything else a registry image."""
    return image.startswith(("/", "./", "../")) or image in (".", "..")


def _flag(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise HpcctlError(f"--container-{name.replace('_', '-')}: '{value}' is not a yes/no value",
                      "set the variable to 1 or 0")


def _absolute(path: str, cwd: str) -> str:
    return os.path.normpath(path if path.startswith("/") else os.path.join(cwd, path))


def parse_image(value: str, cwd: str) -> str:
    image = value.strip().replace("\\#", "#").removeprefix("docker://")
    if image.startswith(("dockerd://", "oras://")):  # the node's Docker daemon, as in enroot, or a .sif in a
        return _scheme_image(image, value)  # registry (ORAS): image/reference.py's grammar
    if not image:
        raise HpcctlError("--container-image is empty", "name an image such as ubuntu:22.04 or a .sqsh file")
    if is_file_reference(image):
        return _absolute(image, cwd)
    if image.endswith((".sif", ".sqsh")) and not any(c in image for c in ":@#"):  # `singularity exec img.sif`
        raise HpcctlError(f"--container-image: '{value}' would be read as a registry image, not as the file",
                          f"name the file with a path starting with / or ./, e.g. ./{image}")
    if not _REFERENCE.fullmatch(image):
        hint = (" (in #SBATCH lines write \\# for #)" if image.endswith("#") or "#" not in image and " " in image
                else "")
        raise HpcctlError(f"--container-image: '{value}' is not an image reference{hint}",
                          "write [USER@][REGISTRY#]IMAGE[:TAG], e.g. nvcr.io#nvidia/pytorch:24.01-py3, "
                          "or a path starting with / or ./ to a squashfs file")
    return image


def _scheme_image(image: str, value: str) -> str:
    from hpcctl.image.reference import parse

    try:
        parse(image)
    except HpcctlError as exc:
        raise HpcctlError(f"--container-image: {exc.problem}", exc.fix) from None
    return image


def _mount_fields(item: str, value: str) -> tuple[str, str, set[str]]:
    """pyxis' SRC[:DST[:FLAGS]]: no part may be empty but FLAGS."""
    fields = item.split(":")
    if len(fields) > 3:
        raise HpcctlError(f"--container-mounts: '{item}' has too many ':'", "write SRC:DST[:FLAGS]")
    if not item:
        raise HpcctlError(f"--container-mounts: '{value}' has an empty entry", "separate mounts with single commas")
    if not all(fields[:2]):
        raise HpcctlError(f"--container-mounts: '{item}' has an empty source or destination",
                          "write SRC[:DST[:FLAGS]]")
    target = fields[1] if len(fields) > 1 else fields[0]
    return fields[0], target, set(fields[2].split("+")) if len(fields) == 3 and fields[2] else set()


KEPT_MOUNTS = ("/proc", "/sys", "/dev")  # what umount:DST may not take away


def _under_any(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def _mount_source(source: str, item: str, cwd: str) -> str:
    if source in SPECIAL_SOURCES:
        return source
    if source.startswith(("/", ".")):
        return _absolute(source, cwd)
    raise HpcctlError(f"--container-mounts: source '{source}' in '{item}' is not a path",
                      "write an absolute path, a path starting with ./, tmpfs or umount")


def parse_mounts(value: str, cwd: str) -> tuple[UserMount, ...]:
    if not value:
        raise HpcctlError("--container-mounts is empty", "write SRC[:DST[:FLAGS]][,SRC:DST...]")
    mounts = []
    for item in value.split(","):
        source, target, flags = _mount_fields(item, value)
        tmpfs_options = sorted(f for f in flags if TMPFS_OPTIONS.fullmatch(f)) if source == "tmpfs" else []
        unknown = sorted(flags - MOUNT_FLAGS - set(tmpfs_options))
        if unknown:
            raise HpcctlError(f"--container-mounts: unknown flag '{unknown[0]}' in '{item}'",
                              f"use flags from: {', '.join(sorted(MOUNT_FLAGS))} (and for tmpfs size=, mode=, "
                              "nr_blocks=, nr_inodes=, huge=), joined with +")
        if "ro" in flags and "rw" in flags:
            raise HpcctlError(f"--container-mounts: '{item}' is both ro and rw", "keep one of them")
        if not target.startswith("/"):
            raise HpcctlError(f"--container-mounts: destination '{target}' in '{item}' is not absolute",
                              "write the path inside the container starting with /")
        if source == "umount" and _under_any(os.path.normpath(target), KEPT_MOUNTS):
            raise HpcctlError(f"--container-mounts: {target} cannot be unmounted",
                              "/proc, /sys and /dev stay: the task's start reads them")
        create = next((f.split("=", 1)[1] for f in flags if f.startswith("x-create=")), "auto")
        mounts.append(UserMount(_mount_source(source, item, cwd), os.path.normpath(target),
                                readonly="ro" in flags, create=create, flags=tuple(sorted(flags)),
                                tmpfs_options=",".join(tmpfs_options)))
    return tuple(mounts)


def parse_name(value: str) -> tuple[str, str]:
    name, _, mode = value.partition(":")
    mode = mode or "auto"
    if not _CONTAINER_NAME.fullmatch(name):
        raise HpcctlError(f"--container-name: '{name}' is not a valid name",
                          "use letters, digits, '.', '_' and '-' (up to 64)")
    if mode not in NAME_MODES:
        raise HpcctlError(f"--container-name: unknown mode '{mode}'", f"use one of: {', '.join(NAME_MODES)}")
    return name, mode


def parse_env(value: str) -> tuple[str, ...]:
    """pyxis' NAME[,NAME...]: every name a variable name, no empty one."""
    if not value:
        raise HpcctlError("--container-env is empty", "list names such as HOME,MY_VAR separated by single commas")
    names = tuple(value.split(","))
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            shown = f"'{name}' is not a variable name" if name else f"'{value}' has an empty name"
            raise HpcctlError(f"--container-env: {shown}", "list names such as HOME,MY_VAR separated by single commas")
    return names


def parse_workdir(value: str) -> str:
    """pyxis changes to the directory right after joining the container, so a relative one starts at its root."""
    if not value:
        raise HpcctlError("--container-workdir is empty", "name a directory in the container, e.g. /workspace")
    return os.path.normpath(os.path.join("/", value))


_BOTH_WAYS = {"mount_home": ("--container-mount-home", "--no-container-mount-home"),
              "remap_root": ("--container-remap-root", "--no-container-remap-root"),
              "entrypoint": ("--container-entrypoint", "--no-container-entrypoint"),
              "writable": ("--container-writable", "--container-readonly")}
NAMESPACES = ("net", "ipc", "uts")


def _refuse(raw: dict) -> None:
    """What pyxis refuses before it starts."""
    unknown = set(raw) - {"image", "mounts", "workdir", "name", "env", "env_host", "mount_home", "remap_root",
                          "entrypoint", "entrypoint_log", "writable", "readonly", "mpi", "unshare", "save", "conflict"}
    if unknown:
        raise HpcctlError(f"unknown container option '{sorted(unknown)[0]}'", "update the hpcctl plugin")
    if raw.get("conflict") in _BOTH_WAYS:
        on, off = _BOTH_WAYS[raw["conflict"]]
        raise HpcctlError(f"{on} and {off} were both given", "keep one of them")


def parse_save(value: str, cwd: str) -> str:
    """pyxis' --container-save=PATH: a squashfs file to write (with your rights) when the step ends."""
    if value.endswith("/"):
        raise HpcctlError(f"--container-save: target '{value}' is a directory",
                          "name the squashfs file to write, e.g. ./state.sqsh")
    return _absolute(value, cwd)


def parse_unshare(value: str) -> tuple[str, ...]:
    """pyxis' --container-unshare=NS[,NS...]: namespaces the step gets of its own, shared by its tasks."""
    names = [n.strip() for n in value.split(",")]
    unknown = [n for n in names if n not in NAMESPACES]
    if unknown:
        raise HpcctlError(f"--container-unshare: unknown namespace '{unknown[0]}'",
                          f"use {', '.join(NAMESPACES)}, separated by commas")
    return tuple(n for n in NAMESPACES if n in names)


def _kept(raw: dict) -> tuple[str, ...]:
    """--container-env's names; on a node (``env_host``: those the job's environment has), only those, so that a
    name the host lacks keeps the image's value, as in pyxis' environ() hook."""
    names = parse_env(raw["env"])
    if "env_host" not in raw:
        return names
    host = set(raw["env_host"].split(","))
    return tuple(n for n in names if n in host)


def parse(raw: dict, cwd: str = "/") -> ContainerOptions:
    """``raw``: the shim's {option: string} (only the options that were set), plus on a node ``env_host`` and, for a
    flag given both ways, ``conflict``."""
    _refuse(raw)
    values: dict = {}
    if "image" in raw:
        values["image"] = parse_image(raw["image"], cwd)
    if "mounts" in raw:
        values["mounts"] = parse_mounts(raw["mounts"], cwd)
    if "workdir" in raw:
        values["workdir"] = parse_workdir(raw["workdir"])
    if "name" in raw:
        values["name"], values["name_mode"] = parse_name(raw["name"].strip())
    if "env" in raw:
        values["env"] = _kept(raw)
    for key in ("mount_home", "remap_root", "entrypoint", "entrypoint_log", "writable"):
        if key in raw:
            values[key] = _flag(key, raw[key])
    if "readonly" in raw and "writable" not in raw:  # PYXIS_CONTAINER_READONLY, the inverse of ..._WRITABLE
        values["writable"] = not _flag("readonly", raw["readonly"])
    if "mpi" in raw:
        values["mpi"] = raw["mpi"].strip() or None
    if "unshare" in raw:
        values["unshare"] = parse_unshare(raw["unshare"])
    if "save" in raw:
        values["save"] = parse_save(raw["save"], cwd)
    options = ContainerOptions(**values)
    if not options.image and not options.name:
        given = ", ".join(f"--container-{k.replace('_', '-')}" for k in sorted(set(raw) - {"env_host"}))
        raise HpcctlError(f"{given} given without --container-image",
                          "add --container-image=IMAGE (or --container-name of a container made earlier in the job)")
    return options
