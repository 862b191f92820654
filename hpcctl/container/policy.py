"""The site's policy on user mounts: allowed at all, and never from a denied host prefix (after symlinks)."""

from __future__ import annotations

import os

from hpcctl.errors import HpcctlError
from hpcctl.site.config import UserMountPolicy


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix + "/") or prefix == "/"


def check_source(source: str, policy: UserMountPolicy, real: str | None = None) -> str:
    """The real path of a user's mount source; HpcctlError when the site does not allow it. ``real``: the path as
    resolved with the user's rights (root passes it, so it never resolves a user's links itself)."""
    if not policy.allow:
        raise HpcctlError("--container-mounts: this site does not allow user mounts",
                          "ask your admins, or copy the data into a directory the site mounts")
    real = real or os.path.realpath(source)
    for prefix in policy.deny_prefixes:  # a parent of a denied path would show it too (binds are recursive)
        if _under(real, prefix) or _under(source, prefix) or _under(prefix, real):
            shown = source if real == source else f"{source} (= {real})"
            raise HpcctlError(f"--container-mounts: {shown} is under {prefix}, which this site does not let "
                              "users mount", "mount a directory outside the denied prefixes")
    return real
