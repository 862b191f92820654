"""A container root tree to read libraries from: a directory as is, or a squashfs image mounted read-only."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator

from hpcctl.errors import HpcctlError

SQUASHFS_MAGIC = b"hsqs"


def _is_squashfs(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == SQUASHFS_MAGIC


@contextlib.contextmanager
def opened(path: str) -> Iterator[str]:
    """Yield a directory holding the image's tree; a squashfs file is mounted with squashfuse for the duration."""
    if os.path.isdir(path):
        yield path
        return
    if not os.path.isfile(path) or not _is_squashfs(path):
        raise HpcctlError(f"{path} is neither a root directory nor a squashfs image",
                          "pass an unpacked root tree or a .sqsh file from the image cache")
    mountpoint = tempfile.mkdtemp(prefix="hpcctl-rootfs-")
    try:
        try:
            result = subprocess.run(["squashfuse", "-o", "ro", path, mountpoint], capture_output=True, text=True,
                                    check=False)
        except FileNotFoundError:
            raise HpcctlError(f"cannot read the libraries of {path}: squashfuse is not installed on this node",
                              "install squashfuse (apt-get install squashfuse), or pass an unpacked root tree")
        if result.returncode:
            raise HpcctlError(f"cannot mount {path} with squashfuse: {result.stderr.strip()}",
                              "install squashfuse and make /dev/fuse usable, or pass an unpacked root tree")
        try:
            yield mountpoint
        finally:
            subprocess.run(["fusermount", "-u", mountpoint], capture_output=True, check=False)
    finally:
        os.rmdir(mountpoint)
