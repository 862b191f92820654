"""`hpcctl site check`: does every file, device, library and directory a site config names exist on this node?"""

from __future__ import annotations

import glob
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


def _library(section: str, name: str, ldconfig: str, required: bool = True) -> Finding:
    if name.startswith("/"):
        found = os.path.exists(name)
        return Finding(section, "library", name, found, required, os.path.realpath(name) if found else "")
    hits = ldcache.find(name, ldconfig)
    hits = [h for h in hits if h.is_64bit] or hits
    detail = f"{hits[0].path} -> {os.path.realpath(hits[0].path)}" if hits else "not in ldconfig -p"
    return Finding(section, "library", name, bool(hits), required, detail)


def _gpu(site: SiteConfig, node: str) -> list[Finding]:
    from hpcctl.container.inject import gres
    from hpcctl.container.inject.gpu import driver_version, find_binary

    gpu = site.gpu
    out = [_path("gpu", "ldconfig", gpu.ldconfig)]
    if gpu.gres_conf:
        out.append(_path("gpu", "gres.conf", gpu.gres_conf))
        try:
            with open(gpu.gres_conf) as fh:
                devices = gres.gpu_files(fh.read(), node)
        except OSError:
            devices = []
    else:
        devices = sorted(glob.glob(gpu.device_pattern.replace("{index}", "[0-9]*")))
    out += [_path("gpu", "GPU device", d) for d in devices]
    if not devices:
        out.append(Finding("gpu", "GPU device", gpu.device_pattern, False, False, "no GPU devices on this node"))
    out += [_path("gpu", "control device", d, required=False) for d in gpu.control_devices]
    version = driver_version(site)
    out += [_library("gpu", lib, gpu.ldconfig, required=False) for lib in gpu.driver_libraries]
    for name in gpu.binaries:
        path = find_binary(name)
        out.append(Finding("gpu", "utility", name, path is not None, False, path or "not found"))
    out.append(Finding("gpu", "driver version", "/proc/driver/nvidia/version or nvidia-smi", version is not None,
                       False, version or "unknown"))
    if gpu.cdi_spec:
        out.append(_cdi(gpu.cdi_spec))
    return out


def _cdi(path: str) -> Finding:
    from hpcctl.container.inject import cdi
    from hpcctl.errors import HpcctlError

    if not os.path.exists(path):
        return Finding("gpu", "CDI spec", path, False, False, "absent: the driver list is used")
    try:
        spec = cdi.load(path)
    except HpcctlError as exc:
        return Finding("gpu", "CDI spec", path, False, True, str(exc))
    names = ", ".join(str(d.get("name")) for d in spec["devices"])
    return Finding("gpu", "CDI spec", path, True, False, f"{spec['kind']} devices: {names}")


def check_node(site: SiteConfig, node: str | None = None) -> list[Finding]:
    """Every path the config names, resolved for ``node`` (default: this host's short name)."""
    node = node or socket.gethostname().split(".")[0]
    out = [
        _path("slurm", "config dir", site.slurm.config_dir),
        _path("slurm", "spool dir", site.slurm.spool_for(node)),
        _path("slurm", "TmpFS", site.slurm.tmpfs_for(node)),
        _path("slurm", "munge socket dir", site.slurm.munge_socket_dir),
        _path("cache", "cache root (created on first pull)", site.cache.root_for(node), required=False),
        _path("plugin", "runtime dir (created by the plugin)", site.plugin.runtime_dir, required=False),
    ]
    out += [_path("mounts", "site mount", m.source, not m.optional) for m in site.mounts]
    for flavour in site.mpi.flavours.values():
        section = f"mpi.{flavour.name}"
        out += [_library(section, lib, site.gpu.ldconfig) for lib in flavour.libraries + flavour.dependencies]
        out += [_path(section, "bind", m.source.replace("%n", node), not m.optional) for m in flavour.binds]
    if site.raw.get("gpu"):
        out += _gpu(site, node)
    if site.cache.shared:
        out += _shared_store(site, node)
    return out


def _shared_store(site: SiteConfig, node: str) -> list[Finding]:
    """The shared image store as this node sees it (hpcctl.image.shared_store.check)."""
    from hpcctl.image.shared_store import SharedStore, check
    root = site.cache.shared.root
    return [Finding("cache.shared", what, root, bool(ok), ok is not None, detail)
            for what, ok, detail in check(SharedStore(site.cache.shared, node))]
