"""Garbage collection of the image cache: least recently used images first, down to a target size.

An image a job uses (someone holds a shared flock on its ``.use`` file) or that is being pulled is never removed.
Layer blobs that no cached image needs, and leftovers of killed pulls, go first, but only while no pull runs
(pulls hold ``gc.lock`` shared for their whole duration). GC never waits for a lock, and counts only bytes it
measured on disk (see ImageCache.disk_usage), never sizes a manifest declares.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field
from typing import Iterator

from hpcctl.errors import HpcctlError
from hpcctl.image import locks
from hpcctl.image.cache import GC_LOCK, Entry, ImageCache, on_disk


@dataclass
class GcResult:
    usage_before: int
    usage_after: int
    target: int
    removed: list[dict] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    blobs_removed: int = 0

    def to_dict(self) -> dict:
        return {"usage_before": self.usage_before, "usage_after": self.usage_after, "target": self.target,
                "freed": self.usage_before - self.usage_after, "removed": self.removed, "in_use": self.in_use,
                "blobs_removed": self.blobs_removed}


@contextlib.contextmanager
def _try_exclusive(cache: ImageCache, name: str) -> Iterator[bool]:
    """Yields True while holding an exclusive flock on locks/NAME, False if someone else holds it."""
    fd = cache.open_lock(name)
    try:
        yield locks.try_flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _claim(cache: ImageCache, entry: Entry) -> Iterator[bool]:
    """True while this process holds the image exclusively: not used by a job, not being pulled."""
    with _try_exclusive(cache, f"{entry.key}.use") as unused, _try_exclusive(cache, f"{entry.key}.pull") as idle:
        yield unused and idle and cache.lookup(entry.digest) is not None


def _sweep(cache: ImageCache) -> tuple[int, int]:
    """While no pull runs (gc.lock held exclusively): remove blobs no cached image needs, and what killed pulls
    left behind (partial files, a squashfs whose metadata was never written). Returns (blobs removed, bytes)."""
    count = freed = 0
    with _try_exclusive(cache, GC_LOCK) as ok:
        if not ok:
            return 0, 0
        needed = {d.split(":", 1)[1] for d in cache.referenced_blobs()}
        for blob in cache.blob_files():
            if blob.name not in needed:
                size = on_disk(blob.stat())
                blob.unlink()
                count, freed = count + 1, freed + size
        leftovers = list(cache.tmp.iterdir()) if cache.tmp.is_dir() else []
        leftovers += [p for p in cache.images.glob("*.sqsh") if cache.lookup("sha256:" + p.stem) is None]
        for path in leftovers:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                path.unlink()
    return count, freed


def collect(cache: ImageCache, target: int, dry_run: bool = False, keep: set = frozenset()) -> GcResult:
    """Remove unused blobs, then least recently used images, until the cache holds at most ``target`` bytes.
    Images whose digest is in ``keep`` (the one a pull just made) stay."""
    usage = cache.disk_usage()
    result = GcResult(usage_before=usage, usage_after=usage, target=target)
    if not cache.locks.is_dir():
        return result
    if not dry_run:
        result.blobs_removed, freed = _sweep(cache)
        usage -= freed
    for entry in sorted(cache.entries(), key=lambda e: e.last_used):
        if usage <= target:
            break
        if entry.digest in keep:
            continue
        with _claim(cache, entry) as ours:
            if not ours:
                result.in_use.append(entry.meta["reference"])
                continue
            if not dry_run:
                cache.remove(entry)
            usage -= entry.disk_bytes
            result.removed.append({"reference": entry.meta["reference"], "digest": entry.digest,
                                   "size": entry.disk_bytes})
    if not dry_run and result.removed:
        count, freed = _sweep(cache)
        result.blobs_removed += count
    result.usage_after = cache.disk_usage() if not dry_run else usage
    return result


def remove(cache: ImageCache, entry: Entry) -> None:
    """`hpcctl image rm`: remove one image now, refusing while a job uses it or a pull writes it."""
    with _claim(cache, entry) as ours:
        if not ours:
            raise HpcctlError(f"image {entry.meta['reference']} is in use by a running job or pull",
                              "try again when the job has ended")
        cache.remove(entry)
    _sweep(cache)
