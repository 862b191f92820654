"""Typed site config: parsed and validated once, at the edge; everything else trusts these objects."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from hpcctl.errors import ConfigError, HpcctlError
from hpcctl.resources import data_dir
from hpcctl.schema.validate import Located, load_yaml_file, validate_or_raise
from hpcctl.site.schema import SITE_SCHEMA

REPO_SITE_DIR = data_dir("site-configs")
SYSTEM_SITE_FILE = Path("/etc/hpcctl/site.yaml")
SEARCH_DIRS = (Path("/etc/hpcctl/site-configs"), REPO_SITE_DIR)

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str | int) -> int:
    """'20GiB', '500M', '1.5G' or a byte count -> bytes (powers of 1024, as admins mean them for disks)."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", value, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_duration(value: str) -> int | None:
    """A Slurm time limit in seconds; None for UNLIMITED. Forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    if value == "UNLIMITED":
        return None
    days = 0
    if "-" in value:
        head, value = value.split("-", 1)
        days = int(head)
        parts = [int(p) for p in value.split(":")]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    else:
        parts = [int(p) for p in value.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    flags: tuple[str, ...] = ("rbind", "nosuid", "nodev")
    optional: bool = False
    why: str = ""

    @property
    def readonly(self) -> bool:
        return "ro" in self.flags

    @classmethod
    def from_dict(cls, raw: dict) -> "Mount":
        return cls(source=raw["source"], target=raw.get("target", raw["source"]),
                   flags=tuple(raw.get("flags", cls.flags)), optional=raw.get("optional", False),
                   why=raw.get("why", ""))


@dataclass(frozen=True)
class SlurmPaths:
    config_dir: str = "/etc/slurm"
    spool_dir: str = "/var/spool/slurmd"
    tmpfs: str = "/tmp"
    munge_socket_dir: str = "/run/munge"

    def spool_for(self, node: str) -> str:
        return self.spool_dir.replace("%n", node)

    def tmpfs_for(self, node: str) -> str:
        return self.tmpfs.replace("%n", node)


@dataclass(frozen=True)
class SharedStoreConfig:
    """The cluster-wide image store on a shared file system (hpcctl.image.shared_store): each image is converted
    once for the whole cluster, into ``root``, by ``owner`` (a service account; never root, which the file system
    may squash). ``mode``: mount (jobs loop-mount the shared file) or copy (nodes copy it into their cache first)."""

    root: str
    owner: str
    mode: str = "mount"


@dataclass(frozen=True)
class CacheConfig:
    root: str = "/var/lib/hpcctl/cache"
    high_watermark: int = 50 << 30
    low_watermark: int = 40 << 30
    compression: str = "zstd"
    shared: SharedStoreConfig | None = None

    @property
    def per_node(self) -> bool:
        """Whether ``root`` holds %n: each Slurm node of a host has its own cache (several slurmd on one host)."""
        return "%n" in self.root

    def root_for(self, node: str | None) -> str:
        """The cache directory of Slurm node ``node`` (a name from slurm.conf, never the job's environment)."""
        if not self.per_node:
            return self.root
        if not node:
            raise HpcctlError(f"cache.root {self.root} is per node (%n) and no node was named",
                              "name the node (--node NAME)")
        return self.root.replace("%n", node)


@dataclass(frozen=True)
class RegistryConfig:
    default: str = "docker.io"
    insecure: tuple[str, ...] = ()
    mirrors: dict = field(default_factory=dict)
    netrc: str = "~/.config/enroot/.credentials"
    docker_config: bool = True
    timeout_s: float = 30.0
    retries: int = 4


@dataclass(frozen=True)
class UserMountPolicy:
    allow: bool = True
    deny_prefixes: tuple[str, ...] = ("/etc", "/var/spool/slurm", "/var/lib/hpcctl", "/run/munge", "/proc", "/sys")


@dataclass(frozen=True)
class EnvRules:
    set: dict = field(default_factory=dict)
    prepend: dict = field(default_factory=dict)
    append: dict = field(default_factory=dict)
    unset: tuple[str, ...] = ()


@dataclass(frozen=True)
class MpiFlavour:
    name: str
    libraries: tuple[str, ...]
    dependencies: tuple[str, ...] = ()
    abi_check: str = "major"
    binds: tuple[Mount, ...] = ()
    env: dict = field(default_factory=dict)
    pmix: bool = True
    description: str = ""


@dataclass(frozen=True)
class MpiConfig:
    default: str | None = None
    flavours: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GpuConfig:
    driver_libraries: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()
    control_devices: tuple[str, ...] = ()
    device_pattern: str = "/dev/nvidia{index}"
    cdi_spec: str | None = None
    gres_conf: str | None = None
    ldconfig: str = "/sbin/ldconfig"


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool = False
    max_time: int | None = None
    max_nodes: int | None = None
    max_gpus_per_node: int | None = None
    gpu_types: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class PluginDefaults:
    runtime_dir: str = "/run/hpcctl"
    exec: str = "/usr/local/lib/hpcctl/hpcctl-exec"  # the plan executor `hpcctl run` calls (built from spank/)
    mount_home: bool = True
    entrypoint: bool = False
    writable: bool = True
    # host files every container sees read-only at the same path (as enroot's mounts): name resolution
    host_files: tuple[str, ...] = ("/etc/hosts", "/etc/resolv.conf")


@dataclass(frozen=True)
class SiteConfig:
    path: str
    cluster: str
    description: str = ""
    slurm: SlurmPaths = SlurmPaths()
    cache: CacheConfig = CacheConfig()
    registries: RegistryConfig = RegistryConfig()
    mounts: tuple[Mount, ...] = ()
    user_mounts: UserMountPolicy = UserMountPolicy()
    environment: EnvRules = EnvRules()
    mpi: MpiConfig = MpiConfig()
    gpu: GpuConfig = GpuConfig()
    partitions: dict = field(default_factory=dict)
    plugin: PluginDefaults = PluginDefaults()
    templates_dir: str | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def default_partition(self) -> Partition | None:
        return next((p for p in self.partitions.values() if p.default), None)


def _tuple(raw: dict, key: str) -> dict:
    return {key: tuple(raw[key])} if key in raw else {}


def from_located(doc: Located) -> SiteConfig:
    """Validate a parsed document and build the typed config; ConfigError lists every problem with file:line."""
    validate_or_raise(doc, SITE_SCHEMA, "see `hpcctl site schema` for the allowed keys")
    raw = doc.data
    problems: list[str] = []

    def sub(key: str) -> dict:
        return raw.get(key) or {}

    cache_raw = sub("cache")
    cache = CacheConfig(**{k: v for k, v in cache_raw.items() if k in ("root", "compression")},
                        **{k: parse_size(cache_raw[k]) for k in ("high_watermark", "low_watermark")
                           if k in cache_raw},
                        shared=SharedStoreConfig(**cache_raw["shared"]) if cache_raw.get("shared") else None)
    if cache.low_watermark > cache.high_watermark:
        problems.append(f"{doc.file}:{doc.line(('cache', 'low_watermark'))}: cache.low_watermark: larger than "
                        f"high_watermark (set it below {cache.high_watermark} bytes)")
    if "%" in cache.root.replace("%n", ""):
        problems.append(f"{doc.file}:{doc.line(('cache', 'root'))}: cache.root: only %n (the node name) may follow "
                        f"a % in {cache.root} (write e.g. /var/lib/hpcctl/nodes/%n/cache)")
    if cache.shared and (cache.shared.root + "/").startswith(cache.root.rstrip("/") + "/"):
        problems.append(f"{doc.file}:{doc.line(('cache', 'shared', 'root'))}: cache.shared.root: inside the node "
                        f"cache {cache.root} (give a directory on the cluster's shared file system)")

    reg_raw = sub("registries")
    registries = RegistryConfig(**{k: v for k, v in reg_raw.items() if k not in ("insecure",)},
                                **_tuple(reg_raw, "insecure"))

    um_raw = sub("user_mounts")
    user_mounts = UserMountPolicy(**{k: v for k, v in um_raw.items() if k == "allow"},
                                  **_tuple(um_raw, "deny_prefixes"))

    env_raw = sub("environment")
    environment = EnvRules(**{k: {n: str(v) for n, v in env_raw[k].items()}
                              for k in ("set", "prepend", "append") if k in env_raw},
                           **_tuple(env_raw, "unset"))

    mpi_raw = sub("mpi")
    flavours = {}
    for name, f in (mpi_raw.get("flavours") or {}).items():
        flavours[name] = MpiFlavour(
            name=name, libraries=tuple(f["libraries"]), dependencies=tuple(f.get("dependencies", ())),
            abi_check=f.get("abi_check", "major"), binds=tuple(Mount.from_dict(m) for m in f.get("binds", ())),
            env={k: str(v) for k, v in (f.get("env") or {}).items()}, pmix=f.get("pmix", True),
            description=f.get("description", ""))
    default_mpi = mpi_raw.get("default")
    if default_mpi is not None and default_mpi not in flavours:
        problems.append(f"{doc.file}:{doc.line(('mpi', 'default'))}: mpi.default: '{default_mpi}' is not a flavour "
                        f"(define it under mpi.flavours or pick one of: {', '.join(flavours) or 'none defined'})")
    mpi = MpiConfig(default=default_mpi, flavours=flavours)

    gpu_raw = sub("gpu")
    gpu = GpuConfig(**{k: v for k, v in gpu_raw.items()
                       if k in ("device_pattern", "cdi_spec", "gres_conf", "ldconfig")},
                    **_tuple(gpu_raw, "driver_libraries"), **_tuple(gpu_raw, "binaries"),
                    **_tuple(gpu_raw, "control_devices"))

    partitions = {}
    for name, p in (sub("partitions")).items():
        p = p or {}
        partitions[name] = Partition(
            name=name, default=p.get("default", False),
            max_time=parse_duration(p["max_time"]) if "max_time" in p else None,
            max_nodes=p.get("max_nodes"), max_gpus_per_node=p.get("max_gpus_per_node"),
            gpu_types=tuple(p.get("gpu_types", ())), description=p.get("description", ""))
    if sum(p.default for p in partitions.values()) > 1:
        problems.append(f"{doc.file}:{doc.line(('partitions',))}: partitions: more than one default partition "
                        "(mark only one with default: true)")

    if problems:
        raise ConfigError(problems)

    return SiteConfig(
        path=doc.file, cluster=raw["cluster"], description=raw.get("description", ""),
        slurm=SlurmPaths(**sub("slurm")), cache=cache, registries=registries,
        mounts=tuple(Mount.from_dict(m) for m in raw.get("mounts") or ()), user_mounts=user_mounts,
        environment=environment, mpi=mpi, gpu=gpu, partitions=partitions,
        plugin=PluginDefaults(**{**sub("plugin"), **_tuple(sub("plugin"), "host_files")}),
        templates_dir=sub("templates").get("dir"), raw=raw)


def load_site(path: str | os.PathLike) -> SiteConfig:
    return from_located(load_yaml_file(str(path)))


def find_site_file(choice: str) -> Path:
    """The site config file a --site value names: a path as is, else NAME.yaml in the site config folders."""
    if "/" in choice or choice.endswith((".yaml", ".yml")):
        return Path(choice)
    for folder in SEARCH_DIRS:
        candidate = folder / f"{choice}.yaml"
        if candidate.exists():
            return candidate
    known = sorted({p.stem for d in SEARCH_DIRS if d.is_dir() for p in d.glob("*.yaml")})
    raise HpcctlError(f"unknown site '{choice}'", f"known sites: {', '.join(known) or 'none'}")
