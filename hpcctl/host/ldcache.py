"""Dynamic linker caches (`ldconfig -p`): which file provides a library name, on the host or in a container root."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache

_LINE = re.compile(r"^\s*(?P<name>\S+)\s+\((?P<flags>[^)]*)\)\s+=>\s+(?P<path>\S+)\s*$")


@dataclass(frozen=True)
class LdEntry:
    name: str
    flags: str
    path: str

    @property
    def is_64bit(self) -> bool:
        return "x86-64" in self.flags or "64bit" in self.flags or "AArch64" in self.flags


def parse(text: str) -> list[LdEntry]:
    return [LdEntry(**m.groupdict()) for m in map(_LINE.match, text.splitlines()) if m]


@lru_cache(maxsize=4)
def entries(ldconfig: str = "/sbin/ldconfig") -> tuple[LdEntry, ...]:
    out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=False).stdout
    return tuple(parse(out))


def entries_of_cache(cache: str, ldconfig: str = "/sbin/ldconfig") -> tuple[LdEntry, ...]:
    """The entries of the linker cache file ``cache`` (a container's, read with ``ldconfig -C CACHE -p``)."""
    out = subprocess.run([ldconfig, "-C", cache, "-p"], capture_output=True, text=True, timeout=30,
                         check=False).stdout
    return tuple(parse(out))


def find(name: str, ldconfig: str = "/sbin/ldconfig") -> list[LdEntry]:
    """Entries whose name is ``name`` or starts with it (``libcuda.so`` matches ``libcuda.so.1``), 64-bit first."""
    hits = [e for e in entries(ldconfig) if e.name == name or e.name.startswith(name + ".")]
    return sorted(hits, key=lambda e: not e.is_64bit)
