"""Run a function on untrusted content as the job's user, in a child bounded in time and memory.

The step helper runs as root; whatever reads an image's files (its passwd, its linker configuration, its libraries'
ELF headers) runs here instead: a forked child that may first prepare its view as root (mount the image in a private
mount namespace), then drops to the job's user for good, with resource limits, and answers with JSON on a pipe. A
child that overruns its time is killed with its mount namespace, so nothing it set up outlives it.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import time
from collections.abc import Callable

from hpcctl.container.access import Identity
from hpcctl.errors import HpcctlError

MEMORY_LIMIT = 1 << 30  # address space of the child, bytes
REPLY_LIMIT = 16 << 20  # bytes of JSON the parent accepts
PR_SET_PDEATHSIG = 1


def drop_to(who: Identity) -> None:
    """Become ``who`` for good (real, effective and saved ids) when running as root."""
    if os.geteuid() != 0 or who.uid == 0:
        return
    os.setgroups(list(who.groups))
    os.setresgid(who.gid, who.gid, who.gid)
    os.setresuid(who.uid, who.uid, who.uid)


def _die_with_parent() -> None:
    """SIGKILL when the parent goes (a step cancelled meanwhile); set after the last change of ids, which clears
    it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(1)


def _limit(seconds: float) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (int(seconds) + 1, int(seconds) + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _child(write_fd: int, prepare: Callable[[], None], work: Callable[[], object], who: Identity,
           seconds: float) -> None:
    status = 1
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        prepare()
        drop_to(who)
        _die_with_parent()
        _limit(seconds)
        reply = {"ok": work()}
        status = 0
    except HpcctlError as exc:
        reply = {"error": str(exc)}
    except BaseException as exc:  # the parent shows one line; a traceback would go nowhere
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        data = json.dumps(reply).encode()
        while data:
            data = data[os.write(write_fd, data):]
    finally:
        os._exit(status)


def _read(read_fd: int, deadline: float) -> bytes | None:
    """Everything the child writes before EOF; None when the deadline passes first or it writes too much."""
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([read_fd], [], [], left)[0]:
            return None
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > REPLY_LIMIT:
            return None
        chunks.append(chunk)


def run(work: Callable[[], object], who: Identity, what: str, seconds: float = 30,
        prepare: Callable[[], None] = lambda: None):
    """``work()``'s JSON-able result, computed in a child that ran ``prepare()`` as the caller and then became
    ``who``. HpcctlError naming ``what`` when it fails or runs past ``seconds``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(write_fd, prepare, work, who, seconds)
    os.close(write_fd)
    try:
        data = _read(read_fd, time.monotonic() + seconds)
    finally:
        os.close(read_fd)
        if data is None:
            os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if data is None:
        raise HpcctlError(f"reading {what} took longer than {seconds:.0f} s or gave too much output, and was stopped",
                          "check the image for special files (FIFOs, devices) where regular files belong")
    try:
        reply = json.loads(data)
    except ValueError:
        reply = {"error": "no answer"}
    if "error" in reply or "ok" not in reply:
        raise HpcctlError(f"cannot read {what}: {reply.get('error', 'no answer')}",
                          "check that the image is a valid squashfs or root tree")
    return reply["ok"]
