"""GC of the shared image store, coordinated across nodes through the store's use records (see
hpcctl.image.shared_store): an image is removed only when no record of it is live, and never while it is being
converted. All of it runs as the store's owner; which jobs Slurm still knows is asked first, as the caller."""

from __future__ import annotations

import contextlib
import os
import time

from hpcctl.errors import HpcctlError
from hpcctl.image import store_lock
from hpcctl.image.cache import Entry, ImageCache
from hpcctl.image.gc import GcResult
from hpcctl.image.shared_store import TMP_GRACE_S, USE_TTL_S, SharedStore, live_jobs


def _live_records(store: SharedStore, key: str, jobs: set[str] | None) -> list[str]:
    """The live use records of an image: a record names its node and job; it is live while Slurm knows the job,
    or (when Slurm cannot be asked) for USE_TTL_S after it was written. Dead ones are removed."""
    folder = store.uses / key
    live = []
    for record in sorted(folder.iterdir()) if folder.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            job = record.name.rsplit(".", 1)[-1]
            fresh = time.time() - record.stat().st_mtime < USE_TTL_S
            if (job in jobs) if jobs is not None else fresh:
                live.append(record.name)
            else:
                record.unlink()
    return live


def _try_remove(store: SharedStore, entry: Entry, jobs: set[str] | None, dry_run: bool) -> str:
    """'' when the image was removed (or would be); else why it stays. GC holds the image's conversion lock
    meanwhile, so a node that misses the image while its metadata is away waits instead of converting it again over
    a file running jobs may use."""
    lock = str(store.locks / f"{entry.key}.lock")
    if dry_run:
        if os.path.exists(lock):
            return "being converted"
        live = _live_records(store, entry.key, jobs)
        return f"in use on {', '.join(live)}" if live else ""
    fd = store_lock.try_create(lock, f"gc on {store.node} pid {os.getpid()}")
    if fd is None:
        return "being converted"
    try:
        return _remove_unused(store, entry, jobs)
    finally:
        store_lock.release(lock, fd)


def _remove_unused(store: SharedStore, entry: Entry, jobs: set[str] | None) -> str:
    """The metadata is moved away first (no node finds the image from then on), then the records are read: a node
    writes its record before it looks."""
    meta = store.images / f"{entry.key}.json"
    held = store.tmp / f"{entry.key}.gc.{os.getpid()}.json"
    try:
        os.rename(meta, held)
    except FileNotFoundError:
        return ""
    live = _live_records(store, entry.key, jobs)
    if live:
        os.rename(held, meta)
        return f"in use on {', '.join(live)}"
    for path in (entry.sqsh, held):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(OSError):
        (store.uses / entry.key).rmdir()
    return ""


def _sweep(store: SharedStore) -> None:
    """Partial files of publications that died, and locks whose holder died and which no node needed since (both
    untouched for TMP_GRACE_S: a live holder beats every few seconds)."""
    now = time.time()
    for folder in (store.tmp, store.locks):
        for path in folder.iterdir() if folder.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > TMP_GRACE_S:
                    path.unlink()


def _collect(store: SharedStore, target: int, dry_run: bool, jobs: set[str] | None) -> dict:
    entries = ImageCache(store.root).entries() if store.images.is_dir() else []
    usage = sum(e.disk_bytes for e in entries)
    result = GcResult(usage_before=usage, usage_after=usage, target=target)
    if not dry_run:
        _sweep(store)
    for entry in sorted(entries, key=lambda e: e.last_used):
        if usage <= target:
            break
        kept = _try_remove(store, entry, jobs, dry_run)
        if kept:
            result.in_use.append(f"{entry.meta['reference']} ({kept})")
            continue
        usage -= entry.disk_bytes
        result.removed.append({"reference": entry.meta["reference"], "digest": entry.digest,
                               "size": entry.disk_bytes})
    result.usage_after = usage
    return result.to_dict()


def collect(store: SharedStore, target: int, dry_run: bool = False) -> dict:
    """Remove least recently used images without live use records until the store holds at most ``target``."""
    jobs = live_jobs()
    return store.as_owner(lambda: _collect(store, target, dry_run, jobs), "gc of the shared store")


def remove(store: SharedStore, entry: Entry) -> None:
    """`hpcctl image rm`: remove one image from the shared store now, refusing while a job uses it."""
    jobs = live_jobs()
    kept = store.as_owner(lambda: _try_remove(store, entry, jobs, False), "removing the image")
    if kept:
        raise HpcctlError(f"image {entry.meta['reference']} in the shared store is {kept}",
                          "try again when those jobs have ended")

