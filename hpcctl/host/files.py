"""Reading files that may not be what they claim: an image's, or a path a user controls."""

from __future__ import annotations

import os
import stat


def read_regular(path: str, limit: int) -> bytes:
    """The first ``limit`` bytes of ``path`` when it is a regular file, else b'' (never blocks on a FIFO or reads
    a device)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return fh.read(limit)
