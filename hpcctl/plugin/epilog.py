"""job script context (slurmd epilog, root): remove the job's named containers on this node.

Request: {"jobid": N, "uid": N}. Reply: {"removed": bool}.
"""

from __future__ import annotations

import sys

from hpcctl.plugin import names
from hpcctl.plugin.protocol import serve
from hpcctl.site.config import load_site


def handle(request: dict, site_path: str) -> dict:
    return {"removed": names.remove_job(load_site(site_path), str(request["jobid"]))}


if __name__ == "__main__":
    sys.exit(serve(handle))
