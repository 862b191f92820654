"""job script context (slurmd epilog, root): remove the job's named containers and its step pins on this node.

Request: {"jobid": N, "uid": N}. Reply: {"removed": bool, "stopped": holders still alive that were killed}.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import stat
import sys

from hpcctl.plugin import names, warm
from hpcctl.plugin.protocol import serve
from hpcctl.site.config import SiteConfig

PIN_DIR = "/tmp/hpcctl-pins-{uid}"  # written by the shim's srun side (spank/job_pins.c)


def remove_pins(jobid: int, uid: int, pin_dir: str = PIN_DIR) -> None:
    """Unlink the job's pin file inside the user's directory, only when that directory is really theirs: the path is
    under /tmp, and root must not follow a link or remove a file in someone else's directory."""
    with contextlib.suppress(OSError):
        fd = os.open(pin_dir.format(uid=uid), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if st.st_uid == uid and stat.S_IMODE(st.st_mode) & 0o077 == 0:
                os.unlink(str(int(jobid)), dir_fd=fd)
        finally:
            os.close(fd)


def stop_holders(site: SiteConfig, job_id: str) -> int:
    """SIGKILL every container holder of the job still alive on this node (each recorded its pid and start time;
    a recycled pid is never hit). By design none outlives its step; this is the epilog's check that none did, and
    its mount namespace, mounts and loop device go with it."""
    stopped = 0
    for holder in glob.glob(os.path.join(names.job_dir(site, job_id), "*", "*", names.HOLDER)):
        live = names.running(os.path.dirname(holder))
        if live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(live["pid"], signal.SIGKILL)
                stopped += 1
    return stopped


def handle(request: dict, site: SiteConfig) -> dict:
    remove_pins(int(request["jobid"]), int(request["uid"]))
    stopped = stop_holders(site, str(request["jobid"]))
    warm.sweep(names.plans_dir(site))
    return {"removed": names.remove_job(site, str(request["jobid"])), "stopped": stopped}


if __name__ == "__main__":
    sys.exit(serve(handle))
