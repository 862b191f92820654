"""allocator/local context (sbatch, salloc, srun): validate the options and pin the image before submission.

Request: {"context": "allocator"|"local", "options": {...}, "pinned": "<ref@digest>"|null}
Reply: {"pinned": "<what every step of the job runs>"|null}
"""

from __future__ import annotations

import os
import sys

from hpcctl.container import options
from hpcctl.container.access import problem_of
from hpcctl.container.policy import check_source
from hpcctl.errors import HpcctlError
from hpcctl.plugin import images
from hpcctl.plugin.protocol import serve
from hpcctl.site.config import SiteConfig


def handle(request: dict, site: SiteConfig) -> dict:
    opts = options.parse(request.get("options") or {}, os.getcwd())
    for mount in opts.mounts:
        if mount.source not in options.SPECIAL_SOURCES:
            check_source(mount.source, site.user_mounts)
    if not opts.image:
        return {"pinned": None}
    if opts.image_is_file:
        from hpcctl.container.sif_file import check_submitted, is_sif  # the builder's imports: files only

        problem = problem_of(opts.image) or ("is a directory" if os.path.isdir(opts.image) else "")
        if problem:
            raise HpcctlError(f"--container-image: {opts.image} {problem}",
                              "pass a squashfs file that exists on the compute nodes and that you can read")
        if is_sif(opts.image):
            check_submitted(opts.image)
        return {"pinned": opts.image}
    if request.get("pinned"):
        return {"pinned": request["pinned"]}
    return {"pinned": images.pin(opts.image, site, os.getuid())}


if __name__ == "__main__":
    sys.exit(serve(handle))
