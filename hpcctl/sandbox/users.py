"""The sandbox's unprivileged test users, so tests run jobs as normal users and not only as root; the second one's
jobs are other users' jobs in the queue. Also the shared image store's service account, which owns the store."""

from __future__ import annotations

import os
import pwd
import subprocess

from hpcctl.sandbox import layout as L
from hpcctl.sandbox.daemons import StepFailed


def ensure_test_users() -> list[str]:
    """The test users that were missing and are created now."""
    made = []
    for name, uid in ((L.TEST_USER, L.TEST_UID), (L.OTHER_USER, L.OTHER_UID)):
        try:
            pwd.getpwnam(name)
            continue
        except KeyError:
            pass
        result = subprocess.run(["useradd", "--create-home", "--uid", str(uid), "--shell", "/bin/bash",
                                 "--user-group", name], capture_output=True, text=True)
        if result.returncode:
            raise StepFailed("test user", result.stderr.strip() or f"useradd exited {result.returncode}")
        made.append(name)
    return made


def ensure_store_account() -> bool:
    """The shared image store's service account and its directory (owned by it, 0755: users read, only it writes);
    True when something was made."""
    made = False
    try:
        pwd.getpwnam(L.STORE_USER)
    except KeyError:
        result = subprocess.run(["useradd", "--system", "--no-create-home", "--uid", str(L.STORE_UID), "--shell",
                                 "/usr/sbin/nologin", "--user-group", L.STORE_USER], capture_output=True, text=True)
        if result.returncode:
            raise StepFailed("store account", result.stderr.strip() or f"useradd exited {result.returncode}")
        made = True
    if not L.SHARED_STORE.is_dir():
        L.SHARED_STORE.mkdir(parents=True, mode=0o755)
        made = True
    owner = pwd.getpwnam(L.STORE_USER)
    os.chown(L.SHARED_STORE, owner.pw_uid, owner.pw_gid)
    L.SHARED_STORE.chmod(0o755)
    return made
