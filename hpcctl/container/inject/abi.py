"""ABI compatibility of a host library with the container's, from the version numbers in their file names.

Modes, as in Sarus's MPI hook: ``major`` (same soname major), ``full`` (same major, host minor >= container minor),
``strict`` (every version number equal), ``none`` (no check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcctl.errors import HpcctlError

_NAME = re.compile(r"^(?P<linker>.+?\.so)(?:\.(?P<version>\d+(?:\.\d+)*))?$")
MODES = ("major", "full", "strict", "none")


@dataclass(frozen=True)
class LibVersion:
    """A shared library file: ``linker`` name (libmpi.so) and the numbers after it ((40, 30, 4))."""

    file: str
    linker: str
    version: tuple[int, ...]

    @property
    def major(self) -> int | None:
        return self.version[0] if self.version else None

    @property
    def minor(self) -> int | None:
        return self.version[1] if len(self.version) > 1 else None

    @property
    def text(self) -> str:
        return ".".join(map(str, self.version)) or "unversioned"


def parse(file: str) -> LibVersion | None:
    """``/usr/lib/libmpi.so.40.30.4`` -> LibVersion(linker='libmpi.so', version=(40, 30, 4)); None if not a .so."""
    base = file.rsplit("/", 1)[-1]
    match = _NAME.match(base)
    if not match:
        return None
    version = tuple(int(p) for p in match.group("version").split(".")) if match.group("version") else ()
    return LibVersion(file, match.group("linker"), version)


def parse_best(*names: str) -> LibVersion | None:
    """The parse of whichever name carries the most version numbers (real file name, soname, link name)."""
    parsed = [p for p in map(parse, names) if p]
    return max(parsed, key=lambda p: len(p.version), default=None)


def incompatibility(mode: str, host: LibVersion, container: LibVersion) -> str | None:
    """Why ``host`` cannot replace ``container`` under ``mode``, or None when it can."""
    if mode == "none":
        return None
    if host.major is None or container.major is None:
        return None if host.major == container.major else "one of them has no version number in its name"
    if host.major != container.major:
        return f"major version {host.major} != {container.major}"
    if mode == "full" and (container.minor or 0) > (host.minor or 0):
        return f"host minor version {host.minor or 0} is older than the container's {container.minor}"
    if mode == "strict" and host.version != container.version:
        return f"versions differ ({host.text} != {container.text})"
    return None


def compatible(mode: str, host: LibVersion, container: LibVersion) -> bool:
    return incompatibility(mode, host, container) is None


def require(mode: str, host: LibVersion, container: LibVersion, flavour: str, others: str) -> None:
    """Raise the one-line error a user sees when ``host`` cannot replace ``container``."""
    reason = incompatibility(mode, host, container)
    if reason:
        raise HpcctlError(
            f"host MPI '{flavour}' library {host.file} ({host.linker} {host.text}) is not ABI-compatible with the "
            f"container's {container.file} ({container.linker} {container.text}): {reason} (abi_check: {mode})",
            f"use an image built against {host.linker}.{host.major}{others}")
