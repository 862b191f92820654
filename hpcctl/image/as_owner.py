"""Work in the shared image store as its owner (a service account), never as root: shared file systems squash root,
and a root-owned file there would be one users' jobs could not be handed safely.

Root forks a child that drops to the owner for good (no groups) and runs one function: ``run()`` answers with its
JSON result; ``start()`` keeps the child running and talks with it in JSON lines (the store's lock holder). fds the
parent opened stay open in the child, which is how bytes cross between root's node cache and the owner's store
(root opens its file, the owner reads or writes the inherited fd). A caller that is not root works as itself.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from hpcctl.errors import HpcctlError
from hpcctl.image import errors

REPLY_LIMIT = 16 << 20


@dataclass(frozen=True)
class Owner:
    name: str
    uid: int
    gid: int

    @classmethod
    def named(cls, name: str) -> "Owner":
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise HpcctlError(f"cache.shared.owner: user '{name}' does not exist on this node",
                              "create the shared store's service account on every node (same uid everywhere)") \
                from None
        if entry.pw_uid == 0:
            raise HpcctlError(f"cache.shared.owner: '{name}' is root",
                              "name a service account: root is squashed on shared file systems")
        return cls(name, entry.pw_uid, entry.pw_gid)


def become(owner: Owner) -> None:
    """Drop to ``owner`` for good when root; anyone else stays who they are."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(owner.gid, owner.gid, owner.gid)
        os.setresuid(owner.uid, owner.uid, owner.uid)


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _reply(exc: BaseException) -> dict:
    if isinstance(exc, HpcctlError):
        return {"error": exc.problem, "hint": exc.fix, "kind": type(exc).__name__}
    return {"error": f"{type(exc).__name__}: {exc}"}


def raise_reply(reply: dict, what: str) -> None:
    """Raise the error a child answered (its own class when it is one of the image errors)."""
    if "kind" in reply:
        kind = getattr(errors, reply["kind"], HpcctlError)
        raise (kind if isinstance(kind, type) and issubclass(kind, HpcctlError) else HpcctlError)(
            reply["error"], reply["hint"])
    raise HpcctlError(f"{what} failed in the shared image store: {reply['error']}",
                      "check that the store's owner can read and write cache.shared.root (`hpcctl site check`)")


def run(owner: Owner, work: Callable[[], object], what: str, seconds: float = 3600):
    """``work()``'s JSON-able result, computed as ``owner`` (in a child when this process is root)."""
    if os.geteuid() != 0:
        return work()
    child = start(owner, lambda send, orders: send({"ok": work()}))
    try:
        reply = child.read(seconds)
    finally:
        child.finish()
    if reply is None:
        raise HpcctlError(f"{what} took longer than {seconds:.0f} s in the shared image store and was stopped",
                          "check the shared file system on this node")
    if "ok" not in reply:
        raise_reply(reply, what)
    return reply["ok"]


class Child:
    """A running child (the owner): ``read()`` its next message, ``send()`` it one, ``finish()`` to end it."""

    def __init__(self, pid: int, replies: int, orders: int):
        self.pid, self._replies, self._orders = pid, replies, orders
        self._buffer = b""

    def read(self, seconds: float) -> dict | None:
        """The child's next message; None when none came within ``seconds``; {"error": ...} when it ended."""
        deadline = time.monotonic() + seconds
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                return None
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                return {"error": "the store's helper process ended without an answer"}
            self._buffer += chunk
            if len(self._buffer) > REPLY_LIMIT:
                return {"error": "the store's helper process answered too much"}
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {"error": "the store's helper process answered garbage"}

    def send(self, message: dict) -> None:
        _send(self._orders, message)

    def finish(self, kill: bool = False) -> None:
        """Close our ends (the child sees EOF and ends) and reap it; ``kill``: SIGKILL it first."""
        if kill:
            os.kill(self.pid, signal.SIGKILL)
        for fd in (self._orders, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        os.waitpid(self.pid, 0)


def start(owner: Owner, body: Callable[[Callable[[dict], None], int], None]) -> Child:
    """Fork a child that becomes ``owner`` and runs ``body(send, orders_fd)``: ``send`` writes a message to the
    parent, ``orders_fd`` reads the parent's (EOF when the parent finished or died)."""
    replies_r, replies_w = os.pipe()
    orders_r, orders_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(replies_r)
            os.close(orders_w)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            become(owner)
            body(lambda message: _send(replies_w, message), orders_r)
            status = 0
        except BaseException as exc:  # the parent shows one line; a traceback would go nowhere
            try:
                _send(replies_w, _reply(exc))
            except OSError:
                pass
        finally:
            os._exit(status)
    os.close(replies_w)
    os.close(orders_r)
    for fd in (replies_r, orders_w):
        os.set_inheritable(fd, False)
    return Child(pid, replies_r, orders_w)
