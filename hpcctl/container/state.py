"""The node's runtime directory (plugin.runtime_dir): root's state for containers, readable by root only.

Named containers' upper directories, the users' passwd/group files, the Slurm client tree and `hpcctl run`'s plans
live below it. Every name below it is made of validated parts (job ids, uids, node names, container names), so with
this directory root-only no user can plant a file or a link where root writes.
"""

from __future__ import annotations

import os
import stat

from hpcctl.errors import HpcctlError


def runtime_root(path: str) -> str:
    """``path``, created root-only (0700) when missing, its mode tightened when looser; refused when it is not a
    root-owned directory (a link, or someone else's)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise HpcctlError(f"the runtime directory {path} is not a directory owned by root",
                          "remove it (root recreates it), or set plugin.runtime_dir to a root-owned path")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def publish(directory: str, name: str, text: str) -> str:
    """``directory``/``name`` with ``text``, written once and never replaced: steps that start together and get
    the same file share it, and none sees it change under its mount (the name says what the content is)."""
    path = os.path.join(directory, name)
    if os.path.exists(path):
        return path
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path
