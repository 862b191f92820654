"""The image cache's flocks: files only their owner (root, for the node cache) can open, and waits that end.

Lock files live in a 0700 directory and are 0600, opened without following links: a user who could open one could
flock it and hang every step and pull that waits for it. Every wait is bounded: a holder stuck past the bound (a
hung pull, a hung gc) fails the waiter with one line that names the lock, its holder and what to do.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

from hpcctl.image.errors import LockBusy

# How long a pull waits for another pull of the same image on this node (big images take minutes to pull)
PULL_WAIT_S = 600.0
# How long a pull waits for gc, which holds gc.lock exclusively only while it deletes unused layers and leftovers
GC_WAIT_S = 60.0
# How long marking an image in use waits for gc, which holds the image's use lock only while it deletes the image
USE_WAIT_S = 30.0
POLL_S = 0.1
DIR_MODE = 0o700
FILE_MODE = 0o600


def open_lock(directory: Path, name: str) -> int:
    """Open (create) ``directory/name`` for flock, fd-relative and without following links. An older hpcctl made
    the directory 0755 and its files 0644: both are made owner-only on the way."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _owner_only(dir_fd, DIR_MODE)
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    _owner_only(fd, FILE_MODE)
    return fd


def _owner_only(fd: int, mode: int) -> None:
    if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
        os.fchmod(fd, mode)


def try_flock(fd: int, operation: int) -> bool:
    """Take ``operation`` (LOCK_SH or LOCK_EX) on ``fd`` if nobody holds a conflicting lock; never waits."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def flock_within(fd: int, operation: int, seconds: float, what: str, fix: str) -> None:
    """Take ``operation`` on ``fd``, waiting at most ``seconds``; then raise LockBusy: '``what`` is still held by
    pid N after S s (``fix``)'. ``what`` names the lock and its file."""
    deadline = time.monotonic() + seconds
    while not try_flock(fd, operation):
        if time.monotonic() >= deadline:
            raise LockBusy(f"{what} is still held by {_holder(fd)} after {seconds:g} s", fix)
        time.sleep(POLL_S)


def _holder(fd: int) -> str:
    """Who holds a flock on ``fd``'s file, as /proc/locks tells: 'pid 1234', else 'another process'."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as fh:
            rows = [line.split() for line in fh]
    except OSError:
        rows = []
    pids = sorted({row[4] for row in rows if len(row) > 5 and row[1] == "FLOCK" and row[5] == inode})
    return f"pid {', '.join(pids)}" if pids else "another process"
