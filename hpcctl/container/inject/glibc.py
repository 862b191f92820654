"""Will injected host libraries load in the image? Their GLIBC_x.y symbol versions against the image's C library.

A host MPI built on a newer distribution needs a newer glibc than an older image has; without this check the job
fails at run time with "version `GLIBC_2.34' not found" (apptainer/apptainer#2421).
"""

from __future__ import annotations

import os
import re

from hpcctl.container.inject.container_libs import ImageLibraries
from hpcctl.host import elf

_GLIBC = re.compile(r"^GLIBC_(\d+(?:\.\d+)+)$")


def release(versions: set[str]) -> tuple[int, ...] | None:
    """The newest GLIBC_x.y among ``versions`` as a tuple, None when there is none."""
    found = [tuple(int(p) for p in m.group(1).split(".")) for m in map(_GLIBC.match, versions) if m]
    return max(found, default=None)


def text(version: tuple[int, ...]) -> str:
    return "GLIBC_" + ".".join(map(str, version))


def image_release(libs: ImageLibraries) -> tuple[str, tuple[int, ...]] | None:
    """(path, newest GLIBC version it defines) of the image's libc.so.6; None for an image without glibc."""
    for lib in libs.named("libc.so"):
        if lib.version.major == 6:
            newest = release(elf.read(os.path.join(libs.rootfs, lib.real.lstrip("/"))).defined)
            if newest:
                return lib.real, newest
    return None


def needed(path: str) -> tuple[int, ...] | None:
    """The newest GLIBC version the host file at ``path`` needs."""
    return release(set().union(*elf.read(path).needed.values()))
