"""The sandbox's unprivileged test user, so tests run jobs as a normal user and not only as root."""

from __future__ import annotations

import pwd
import subprocess

from hpcctl.sandbox import layout as L
from hpcctl.sandbox.daemons import StepFailed


def ensure_test_user() -> bool:
    try:
        pwd.getpwnam(L.TEST_USER)
        return False
    except KeyError:
        pass
    result = subprocess.run(["useradd", "--create-home", "--uid", str(L.TEST_UID), "--shell", "/bin/bash",
                             "--user-group", L.TEST_USER], capture_output=True, text=True)
    if result.returncode:
        raise StepFailed("test user", result.stderr.strip() or f"useradd exited {result.returncode}")
    return True
