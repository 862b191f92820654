"""Start, find and stop the sandbox's daemons by pid file (PID 1 is not systemd here)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hpcctl.errors import HpcctlError


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: tuple[str, ...]
    pidfile: Path
    log: Path
    user: str | None = None
    foreground: bool = False  # True: we background it ourselves and write the pid file

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid, self.argv[0]) else None


def _alive(pid: int, exe: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return os.path.basename(cmdline) == os.path.basename(exe)


class StepFailed(HpcctlError):
    """A sandbox step failed; the message names the step and carries the tail of its log."""

    def __init__(self, step: str, problem: str, log: Path | None = None):
        tail = ""
        if log and log.exists():
            lines = log.read_text(errors="replace").splitlines()[-15:]
            tail = f"\n--- last lines of {log} ---\n" + "\n".join(lines)
        super().__init__(f"sandbox step '{step}' failed: {problem}",
                         f"see {log}" if log else None)
        self.tail = tail

    def __str__(self) -> str:
        return super().__str__() + self.tail


def start(daemon: Daemon, ready, timeout: float = 20.0) -> int:
    """Start ``daemon`` unless it runs; wait until ``ready()`` is true. Returns its pid."""
    pid = daemon.pid()
    if pid:
        return pid
    daemon.log.parent.mkdir(parents=True, exist_ok=True)
    daemon.pidfile.parent.mkdir(parents=True, exist_ok=True)
    argv = list(daemon.argv)
    if daemon.user:
        argv = ["runuser", "-u", daemon.user, "--", *argv]
    with open(daemon.log, "a") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    if daemon.foreground:
        daemon.pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.foreground and proc.poll() is not None:
            raise StepFailed(daemon.name, f"exited with status {proc.returncode}", daemon.log)
        if not daemon.foreground and proc.poll() not in (None, 0):
            raise StepFailed(daemon.name, f"exited with status {proc.returncode}", daemon.log)
        if daemon.pid() and ready():
            return daemon.pid()
        time.sleep(0.2)
    raise StepFailed(daemon.name, f"not ready after {timeout:.0f} s", daemon.log)


def stop(daemon: Daemon, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``. Returns whether it was running."""
    pid = daemon.pid()
    if not pid:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid, daemon.argv[0]):
        time.sleep(0.2)
    if _alive(pid, daemon.argv[0]):
        os.kill(pid, signal.SIGKILL)
    daemon.pidfile.unlink(missing_ok=True)
    return True
