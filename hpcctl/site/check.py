"""`hpcctl site check`: does every file, device and directory a site config names exist on this node?"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass

from hpcctl.host import ldcache
from hpcctl.site.config import SiteConfig


@dataclass(frozen=True)
class Finding:
    section: str
    what: str
    path: str
    found: bool
    required: bool = True
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _path(section: str, what: str, path: str, required: bool = True) -> Finding:
    return Finding(section, what, path, os.path.exists(path), required)


def _library(section: str, name: str, ldconfig: str) -> Finding:
    if name.startswith("/"):
        return _path(section, "library", name)
    hits = ldcache.find(name, ldconfig)
    return Finding(section, "library", name, bool(hits), True, hits[0].path if hits else "not in ldconfig -p")


def check_node(site: SiteConfig, node: str | None = None) -> list[Finding]:
    """Every path the config names, resolved for ``node`` (default: this host's short name)."""
    node = node or socket.gethostname().split(".")[0]
    out = [
        _path("slurm", "config dir", site.slurm.config_dir),
        _path("slurm", "spool dir", site.slurm.spool_for(node)),
        _path("slurm", "TmpFS", site.slurm.tmpfs_for(node)),
        _path("slurm", "munge socket dir", site.slurm.munge_socket_dir),
        _path("cache", "cache root (created on first pull)", site.cache.root, required=False),
    ]
    out += [_path("mounts", "site mount", m.source, not m.optional) for m in site.mounts]
    for flavour in site.mpi.flavours.values():
        section = f"mpi.{flavour.name}"
        out += [_library(section, lib, site.gpu.ldconfig) for lib in flavour.libraries + flavour.dependencies]
        out += [_path(section, "bind", m.source, not m.optional) for m in flavour.binds]
    out += [_path("gpu", "control device", d, required=False) for d in site.gpu.control_devices]
    if site.gpu.cdi_spec:
        out.append(_path("gpu", "CDI spec", site.gpu.cdi_spec, required=False))
    return out
