"""Build a squashfs from a tar stream with tar2sqfs (squashfs-tools-ng): no directory tree is ever written."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO

from hpcctl.errors import HpcctlError
from hpcctl.image.errors import NoSpace
from hpcctl.image.tarstream import widen_pipe

# site `cache.compression` -> (codec, level). zstd at level 3 (zstd's own default) packs about as well as gzip
# layers at several times the speed; "none" maps to lz4, the cheapest codec squashfs has.
CODECS = {"zstd": ("zstd", 3), "lz4": ("lz4", None), "none": ("lz4", None), "gzip": ("gzip", 6),
          "lzo": ("lzo", None), "xz": ("xz", None)}


BLOCK_SIZE = 128 << 10  # squashfs' default: larger blocks compress a little faster but make random reads dearer


def tar2sqfs_args(compression: str) -> list[str]:
    codec, level = CODECS[compression]
    return ["-c", codec, *(["-X", f"level={level}"] if level else []), "-b", str(BLOCK_SIZE)]


def mksquashfs_args(compression: str) -> list[str]:
    """The same settings for mksquashfs, so benchmarks compare like with like."""
    codec, level = CODECS[compression]
    return ["-comp", codec, *(["-Xcompression-level", str(level)] if level else []), "-b", str(BLOCK_SIZE)]


class SquashfsWriter:
    """``with SquashfsWriter(path, "zstd") as w: w.stdin.write(tar bytes)``; the file is complete when it exits."""

    def __init__(self, path: Path, compression: str = "zstd", jobs: int | None = None):
        tool = shutil.which("tar2sqfs")
        if not tool:
            raise HpcctlError("tar2sqfs is not installed", "install the squashfs-tools-ng package")
        self.path = path
        self._stderr_path = path.with_name(path.name + ".log")
        self._stderr = open(self._stderr_path, "w+b")
        self.proc = subprocess.Popen(
            [tool, "--quiet", "--force", "--no-skip", *tar2sqfs_args(compression),
             "--num-jobs", str(jobs or os.cpu_count() or 1), "--defaults", "mode=0755", str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr, bufsize=0)
        self.stdin: BinaryIO = self.proc.stdin
        widen_pipe(self.stdin.fileno())

    def __enter__(self) -> "SquashfsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is BrokenPipeError:  # tar2sqfs died first: its own message says why
                self._raise_failure(self.proc.wait())
            if exc_type is not None:
                self.proc.kill()
                self.proc.wait()
                return
            try:
                self.stdin.close()
            except BrokenPipeError:
                pass
            rc = self.proc.wait()
            if rc != 0:
                self._raise_failure(rc)
        finally:
            self._stderr.close()
            self._stderr_path.unlink(missing_ok=True)

    def _raise_failure(self, rc: int) -> None:
        self._stderr.seek(0)
        message = self._stderr.read().decode(errors="replace").strip()
        if "No space left" in message or "ENOSPC" in message:
            raise NoSpace(f"no space left on the image cache's disk while writing {self.path.name}",
                          "run `hpcctl image gc` or free space on that disk")
        last = message.splitlines()[-1] if message else f"exit status {rc}"
        raise HpcctlError(f"tar2sqfs failed: {last}")
