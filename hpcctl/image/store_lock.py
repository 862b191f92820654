"""The shared store's cross-node lock: one per image, a file created exclusively (O_CREAT|O_EXCL, atomic on NFS and
Lustre, where flock may not reach across nodes) whose holder refreshes its mtime every HEARTBEAT_S seconds.

- Staleness is judged by each waiter's own monotonic clock: a lock whose (inode, mtime) has not changed for STALE_S
  seconds has lost its holder (node crash, kill -9). No two nodes' clocks are ever compared.
- Take-over is serialized by a second exclusively created file, the guard: only its holder removes the stale lock,
  and only when the lock is still the very file it watched go stale (same inode and mtime). Renaming the stale file
  away instead would race: a slower waiter could move a new holder's fresh lock, and while it put it back a third
  waiter could create another. Once the stale lock is gone, the waiters race on O_EXCL again: one wins.
- The holder keeps its lock file open: the heartbeat is futimens on that fd, and release unlinks the path only
  while it still names the holder's own file.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

HEARTBEAT_S = 2.0
STALE_S = 15.0


@dataclass(frozen=True)
class Seen:
    """A lock file as a waiter saw it."""

    ino: int
    mtime_ns: int


def look(path: str) -> Seen | None:
    """The lock as it is now: opened, not just stat'ed, because an open makes an NFS client fetch fresh attributes
    (close-to-open), where a stat may answer from its attribute cache for up to a minute (acregmax)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return Seen(st.st_ino, st.st_mtime_ns)


def try_create(path: str, holder: str) -> int | None:
    """The fd of a new lock file naming ``holder``, or None when the lock exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return None
    os.write(fd, holder.encode())
    os.fsync(fd)
    return fd


def holder_of(path: str) -> str:
    """Who holds the lock, as its holder wrote it (``node pid N``)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(200).decode(errors="replace") or "another node"
    except OSError:
        return "another node"


def beat(fd: int) -> None:
    os.utime(fd)


def is_ours(path: str, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def release(path: str, fd: int) -> None:
    try:
        if is_ours(path, fd):
            os.unlink(path)
    finally:
        os.close(fd)


class Watch:
    """What a waiter last saw of a lock and since when, by its own clock."""

    def __init__(self, stale_s: float = STALE_S):
        self.stale_s = stale_s
        self.seen: Seen | None = None
        self.since = time.monotonic()

    def stale(self, seen: Seen | None) -> bool:
        """Whether ``seen`` (the lock now) has not changed for stale_s seconds."""
        now = time.monotonic()
        if seen != self.seen:
            self.seen, self.since = seen, now
            return False
        return seen is not None and now - self.since >= self.stale_s


def take_over(path: str, seen: Seen, holder: str, guard_watch: Watch) -> bool:
    """Remove the stale lock ``seen`` at ``path``; True when this waiter removed exactly that file. One waiter at a
    time: the take-over guard (``path``.takeover) is itself created exclusively, and only its holder may remove the
    lock, after checking that it is still the very file that went stale (a beat or a new holder changes it). A guard
    left by a waiter that died inside its take-over (a few syscalls long) goes once ``guard_watch`` calls it stale.
    The caller then tries try_create like every other waiter."""
    guard = f"{path}.takeover"
    fd = try_create(guard, holder)
    if fd is None:
        if guard_watch.stale(look(guard)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(guard)
        return False
    try:
        if look(path) != seen:
            return False
        os.unlink(path)
        return True
    finally:
        release(guard, fd)
