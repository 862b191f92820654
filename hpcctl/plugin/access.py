"""Check paths with the job user's permissions while the core runs as root (slurmstepd's helper)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def readable(paths: list[str], who: Identity) -> dict[str, str]:
    """{path: problem} for each path ``who`` cannot read ('' when fine); runs in a child that becomes ``who``."""
    if os.geteuid() != 0 or os.geteuid() == who.uid:
        return {p: problem_of(p) for p in paths}
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setgroups(list(who.groups))
            os.setresgid(who.gid, who.gid, who.gid)
            os.setresuid(who.uid, who.uid, who.uid)
            answer = "\0".join(f"{p}\0{problem_of(p)}" for p in paths)
            os.write(write_fd, answer.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        data = fh.read().decode()
    os.waitpid(pid, 0)
    items = data.split("\0") if data else []
    result = dict(zip(items[0::2], items[1::2]))
    return {p: result.get(p, "could not be checked") for p in paths}


def problem_of(path: str) -> str:
    try:
        os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return exc.strerror.lower()
    return "" if os.access(path, os.R_OK) else "is not readable by you"
