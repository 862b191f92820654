"""Pull progress: a one-line bar with bytes and rate on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """Thread-safe byte counter; draws at most 10 times a second when ``enabled`` (a TTY was asked for)."""

    def __init__(self, enabled: bool, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = 0
        self.done = 0
        self.label = ""
        self._start = time.monotonic()
        self._drawn = 0.0
        self._lock = threading.Lock()

    def stage(self, label: str, total: int = 0) -> None:
        with self._lock:
            self.label, self.total, self.done = label, total, 0
            self._start = time.monotonic()
        self._draw(force=True)

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            finished = self.total and self.done >= self.total
        self._draw(force=bool(finished))

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        rate = self.done / max(now - self._start, 1e-6)
        if self.total:
            width = 30
            filled = int(width * min(self.done / self.total, 1.0))
            bar = "#" * filled + "-" * (width - filled)
            line = f"{self.label} [{bar}] {human(self.done)} / {human(self.total)}  {human(rate)}/s"
            if self.done >= self.total:
                line += "  converting to squashfs"
        else:
            line = f"{self.label} {human(self.done)}  {human(rate)}/s" if self.done else self.label
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()

    def close(self, message: str = "") -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K" + (message + "\n" if message else ""))
            self.stream.flush()
