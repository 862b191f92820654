"""job script context (slurmd epilog, root): remove the job's named containers and its step pins on this node.

Request: {"jobid": N, "uid": N}. Reply: {"removed": bool}.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys

from hpcctl.plugin import names
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


def handle(request: dict, site: SiteConfig) -> dict:
    remove_pins(int(request["jobid"]), int(request["uid"]))
    return {"removed": names.remove_job(site, str(request["jobid"]))}


if __name__ == "__main__":
    sys.exit(serve(handle))
