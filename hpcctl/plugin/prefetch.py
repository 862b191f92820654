"""job script context (slurmd prolog, root, every node of a new allocation; detached, bounded by the shim): fetch the
image the job was pinned to at submission, so its first step finds it cached, or joins the conversion under way
(single flight per node, and with a shared store once per cluster).

Request: {"jobid": N, "uid": N, "gid": N, "node": SLURMD_NODENAME (slurmd's), "pin": "<reference> <pinned>"}.
Reply: {"image": path} or {"skipped": why}. The pin comes from the job control environment, which the submitting
user can set to anything: it is only ever a registry reference pinned to a digest, fetched with that user's own
credentials, exactly as their first step would.
"""

from __future__ import annotations

import sys

from hpcctl.errors import HpcctlError
from hpcctl.plugin.protocol import serve
from hpcctl.site.config import SiteConfig
from hpcctl.site.nodes import local_nodes


def handle(request: dict, site: SiteConfig) -> dict:
    from hpcctl.image import api
    from hpcctl.image.reference import ImageRef, parse

    _, _, pinned = str(request.get("pin") or "").partition(" ")
    try:
        parsed = parse(pinned, site.registries.default)
    except HpcctlError:
        return {"skipped": "not an image reference"}
    if not isinstance(parsed, ImageRef) or not parsed.digest:
        return {"skipped": "not a registry image pinned to a digest"}
    node = str(request["node"])
    if node not in local_nodes(site):
        raise HpcctlError(f"prefetch: node {node} is not a Slurm node of this host", "check slurm.conf")
    image = api.ensure(pinned, site, uid=int(request["uid"]), gid=int(request["gid"]), node=node,
                       job=str(int(request["jobid"])))
    return {"image": image.path}


if __name__ == "__main__":
    sys.exit(serve(handle))
