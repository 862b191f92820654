"""The one converter from a configured mount (the site's `mounts:`, an MPI flavour's `binds:`) to a plan mount.

`%n` becomes the node's name; a source under /dev/ is a device bind (its nodes stay usable on the private, nodev
/dev); `file`/`dir` say what to create in the container, else the source's kind decides; the flags the C side
applies beyond its defaults (nosuid always, nodev except for devices, ro) travel with it: noexec, non-recursive
`bind`, and the mount's propagation.
"""

from __future__ import annotations

import os

from hpcctl.container.plan import PlanMount
from hpcctl.errors import HpcctlError
from hpcctl.site.config import Mount

PROPAGATION = ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")
CARRIED = ("noexec", "bind", *PROPAGATION)


def carried_flags(flags) -> tuple[str, ...]:
    """The flags the plan carries to the C side (see CARRIED), in their given order."""
    return tuple(f for f in flags if f in CARRIED)


def plan_mount(mount: Mount, node: str, why: str, where: str) -> PlanMount | None:
    """``mount`` on ``node`` as a plan mount; None when an optional source is missing. ``where``: the config key,
    for the error when a required one is."""
    source, target = mount.source.replace("%n", node), mount.target.replace("%n", node)
    if not os.path.exists(source):
        if mount.optional:
            return None
        raise HpcctlError(f"{where}: mount source {source} does not exist on {node}",
                          "create it on the node, or mark the mount optional in the site config")
    if "file" in mount.flags or "dir" in mount.flags:
        create = "file" if "file" in mount.flags else "dir"
    else:
        create = "dir" if os.path.isdir(source) else "file"
    return PlanMount(source, target, kind="dev" if source.startswith("/dev/") else "bind", readonly=mount.readonly,
                     create=create, why=mount.why or why, flags=carried_flags(mount.flags))
