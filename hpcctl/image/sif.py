"""Apptainer/Singularity ``.sif`` files: their root filesystem partition is a squashfs, dumped once into the cache.

Needs an ``apptainer`` or ``singularity`` binary (found through spython); the cache key is the file's identity
(device, inode, size, mtime), so a rewritten .sif is dumped again.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from hpcctl.errors import HpcctlError
from hpcctl.image.cache import CachedImage, ImageCache, ImageConfig
from hpcctl.image.errors import NotFound

_PARTITION = re.compile(r"^\s*(\d+)\s*\|.*\|\s*FS \(Squashfs/\*?System/", re.MULTILINE)


def find_tool() -> str | None:
    from spython.utils import check_install
    return next((tool for tool in ("apptainer", "singularity") if check_install(tool)), None)


def key(path: Path) -> str:
    st = path.stat()
    ident = f"sif:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{path}"
    return "sha256:" + hashlib.sha256(ident.encode()).hexdigest()


def system_partition(tool: str, path: Path) -> str:
    listing = subprocess.run([tool, "sif", "list", str(path)], capture_output=True, text=True, timeout=60)
    match = _PARTITION.search(listing.stdout)
    if listing.returncode != 0 or not match:
        raise HpcctlError(f"{path} has no squashfs system partition ({tool} sif list found none)",
                          "use a .sif built by Apptainer/Singularity 3 or later")
    return match.group(1)


def as_cached_image(path: Path, cache: ImageCache | None = None) -> CachedImage:
    if not path.is_file():
        raise NotFound(f"image file {path} does not exist", "check the path")
    tool = find_tool()
    if tool is None:
        raise HpcctlError(f"{path.name}: .sif images need apptainer or singularity on this node, and neither is "
                          "installed", "install Apptainer, or convert the image to squashfs once: "
                          "`apptainer sif dump <ID> x.sif > x.sqsh`")
    if cache is None:
        raise HpcctlError(".sif images go through the image cache", "call hpcctl.image.api.ensure()")
    digest = key(path)
    entry = cache.lookup(digest)
    if entry is None:
        entry, _ = cache.single_flight(digest, lambda: _dump(tool, path, digest, cache))
    cache.touch(digest)
    return cache.as_image(entry)


def _dump(tool: str, path: Path, digest: str, cache: ImageCache):
    partition = system_partition(tool, path)
    partial = cache.partial_path(digest)
    try:
        with open(partial, "wb") as out:
            subprocess.run([tool, "sif", "dump", partition, str(path)], stdout=out, check=True, timeout=3600)
        return cache.publish(digest, partial, {"reference": str(path), "layers": [],
                                               "config": ImageConfig().to_dict(),
                                               "auth_required": not path.stat().st_mode & 0o004,
                                               "source": "sif"})
    finally:
        partial.unlink(missing_ok=True)
