"""Check paths with the job user's permissions while the core runs as root (slurmstepd's helper)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def examine(paths: list[str], who: Identity) -> dict[str, tuple[str, str]]:
    """{path: (its real path, problem)} as ``who`` sees them (problem '' when readable): links are resolved with
    the user's rights, in a child that becomes ``who``, so root never walks a user's path for them."""
    if os.geteuid() != 0 or os.geteuid() == who.uid:
        return {p: (os.path.realpath(p), problem_of(p)) for p in paths}
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setgroups(list(who.groups))
            os.setresgid(who.gid, who.gid, who.gid)
            os.setresuid(who.uid, who.uid, who.uid)
            answer = "\0".join(f"{p}\0{os.path.realpath(p)}\0{problem_of(p)}" for p in paths)
            os.write(write_fd, answer.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        data = fh.read().decode()
    os.waitpid(pid, 0)
    items = data.split("\0") if data else []
    result = {items[i]: (items[i + 1], items[i + 2]) for i in range(0, len(items) - 2, 3)}
    return {p: result.get(p, (p, "could not be checked")) for p in paths}


def readable(paths: list[str], who: Identity) -> dict[str, str]:
    """{path: problem} for each path ``who`` cannot read ('' when fine)."""
    return {p: problem for p, (_, problem) in examine(paths, who).items()}


def problem_of(path: str) -> str:
    try:
        os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return exc.strerror.lower()
    return "" if os.access(path, os.R_OK) else "is not readable by you"
