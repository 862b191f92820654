"""The container's own shared libraries: its ld.so.cache (read with the host's ldconfig) plus a scan of its lib dirs.

Paths are inside the container. Symlinks are resolved inside the tree, never on the host, so an image's absolute
link ``/lib -> /usr/lib`` stays within the image.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass

from hpcctl.container.inject import abi
from hpcctl.host import ldcache
from hpcctl.host.files import read_regular

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


CONF_BYTES = 1 << 20  # an ld.so.conf file beyond this is cut
CONF_FILES = 64  # files read through `include`, in all
CONF_DEPTH = 4  # nested includes


def _in_root(rootfs: str, path: str) -> str:
    """Host path of the in-container ``path``, its links resolved inside the tree."""
    return os.path.join(rootfs, resolve_in_root(rootfs, path).lstrip("/"))


def _include(rootfs: str, pattern: str, relative_to: str) -> list[str]:
    """In-container paths matching an ``include`` pattern (glob in the last component only, as ld.so.conf uses)."""
    if not pattern.startswith("/"):
        pattern = f"{os.path.dirname(relative_to)}/{pattern}"
    directory, _, name = pattern.rpartition("/")
    try:
        names = sorted(os.listdir(_in_root(rootfs, directory or "/")))
    except OSError:
        return []
    return [f"{directory}/{n}" for n in names if fnmatch.fnmatchcase(n, name)]


def conf_dirs(rootfs: str) -> list[str]:
    """Directories named in the image's /etc/ld.so.conf and what it includes. Files are read only when they are
    regular files of the tree (links resolved inside it), bounded in size, number and nesting."""
    dirs: list[str] = []
    pending = [("/etc/ld.so.conf", 0)]
    read = 0
    while pending and read < CONF_FILES:
        path, depth = pending.pop(0)
        read += 1
        text = read_regular(_in_root(rootfs, path), CONF_BYTES).decode(errors="replace")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("include") and depth < CONF_DEPTH:
                for pattern in line.split()[1:]:
                    pending += [(p, depth + 1) for p in _include(rootfs, pattern, path)]
            elif line.startswith("/"):
                dirs.append(line.split()[0].split("=")[0])
    return dirs


def _scan(rootfs: str) -> list[str]:
    seen_dirs: set[str] = set()
    found: list[str] = []
    for d in (*LIB_DIRS, *conf_dirs(rootfs)):
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
        cache = _in_root(rootfs, "/etc/ld.so.cache")
        if os.path.isfile(cache):
            listed += [e.path for e in ldcache.entries_of_cache(cache, ldconfig) if e.is_64bit]
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
