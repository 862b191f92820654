"""The container's own shared libraries: its ld.so.cache (read with the host's ldconfig) plus a scan of its lib dirs.

Paths are inside the container. Symlinks are resolved inside the tree, never on the host, so an image's absolute
link ``/lib -> /usr/lib`` stays within the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hpcctl.host import ldcache
from hpcctl.inject import abi

LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64",
            "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu")


@dataclass(frozen=True)
class ContainerLib:
    path: str  # as listed (a soname link or the file itself)
    real: str  # the file it resolves to, inside the container
    version: abi.LibVersion


def resolve_in_root(rootfs: str, path: str, limit: int = 40) -> str:
    """Follow symlinks of the in-container ``path`` with ``rootfs`` as /; returns the in-container result."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done[:-1]
            continue
        if part == ".":
            continue
        host = os.path.join(rootfs, *done, part)
        if os.path.islink(host):
            limit -= 1
            if limit < 0:
                return "/" + "/".join(done + [part] + parts)
            target = os.readlink(host)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                done = []
            continue
        done.append(part)
    return "/" + "/".join(done)


def _conf_dirs(rootfs: str) -> list[str]:
    """Directories named in the image's /etc/ld.so.conf and /etc/ld.so.conf.d/*.conf."""
    dirs: list[str] = []
    root = Path(rootfs)
    files = [root / "etc/ld.so.conf", *sorted((root / "etc/ld.so.conf.d").glob("*.conf"))]
    for conf in files:
        try:
            lines = conf.read_text(errors="replace").splitlines()
        except OSError:
            continue
        dirs += [line.split("#")[0].strip() for line in lines
                 if line.strip().startswith("/") and not line.startswith("include")]
    return dirs


def _scan(rootfs: str) -> list[str]:
    seen_dirs: set[str] = set()
    found: list[str] = []
    for d in (*LIB_DIRS, *_conf_dirs(rootfs)):
        real_dir = resolve_in_root(rootfs, d)
        if real_dir in seen_dirs:
            continue
        seen_dirs.add(real_dir)
        try:
            names = sorted(os.listdir(os.path.join(rootfs, real_dir.lstrip("/"))))
        except OSError:
            continue
        found += [f"{real_dir.rstrip('/')}/{n}" for n in names if n.startswith("lib") and ".so" in n]
    return found


class ImageLibraries:
    """The image's shared libraries grouped by linker name (libmpi.so); links are resolved only for the names
    asked about, so a large image costs a directory listing, not a walk over thousands of files."""

    def __init__(self, rootfs: str, ldconfig: str = "/sbin/ldconfig"):
        self.rootfs = rootfs
        listed: list[str] = []
        if os.path.exists(os.path.join(rootfs, "etc/ld.so.cache")):
            listed += [e.path for e in ldcache.entries_in_root(rootfs, ldconfig) if e.is_64bit]
        listed += _scan(rootfs)
        self._paths: dict[str, list[str]] = {}
        for path in dict.fromkeys(listed):
            parsed = abi.parse(path)
            if parsed:
                self._paths.setdefault(parsed.linker, []).append(path)

    def named(self, linker: str) -> list[ContainerLib]:
        """Distinct files (by resolved path) whose linker name is ``linker``, most version numbers first."""
        found: dict[str, ContainerLib] = {}
        for path in self._paths.get(linker, ()):
            real = resolve_in_root(self.rootfs, path)
            if real in found or not os.path.isfile(os.path.join(self.rootfs, real.lstrip("/"))):
                continue
            version = abi.parse_best(real, path)
            found[real] = ContainerLib(path, real, abi.LibVersion(real, version.linker, version.version))
        return sorted(found.values(), key=lambda lib: (-len(lib.version.version), lib.real))
