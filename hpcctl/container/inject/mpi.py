"""Host MPI injection: the site's MPI flavour bound over the container's own MPI after an ABI check.

Modelled on Sarus's MPI hook: each host library is matched to the container's by linker name (libmpi.so), checked
(abi_check: major / full / strict), and bound over the container's file so that links, RPATHs and the rebuilt
linker cache all reach it. Libraries the image lacks, and the flavour's dependencies, go to one directory that
comes first on LD_LIBRARY_PATH. PMIx: the step's server directories are bound so that ranks on every node reach
their slurmstepd.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hpcctl.container.inject import abi, glibc
from hpcctl.container.inject.injection import Injection
from hpcctl.container.inject.layout import LIBDIR
from hpcctl.container.inject.step import StepInfo
from hpcctl.container.plan import EnvOp, PlanMount
from hpcctl.container.site_mounts import plan_mount
from hpcctl.errors import HpcctlError
from hpcctl.host import elf, ldcache
from hpcctl.site.config import MpiFlavour, SiteConfig

if TYPE_CHECKING:  # the facts are read by hpcctl.container, which builds on this package
    from hpcctl.container.image_facts import ImageFacts

NO_MPI = "none"
# What a PMIx v4 server exports, and the MCA name an older or newer PMIx client reads instead (as Sarus maps them).
PMIX_ENV_MAP = {"PMIX_PTL_MODULE": "PMIX_MCA_ptl", "PMIX_SECURITY_MODE": "PMIX_MCA_psec",
                "PMIX_GDS_MODULE": "PMIX_MCA_gds"}


def select(site: SiteConfig, choice: str | None) -> MpiFlavour | None:
    """The flavour a step gets: its --container-mpi, else the site default; None for 'none' or no default."""
    name = choice or site.mpi.default
    if not name or name == NO_MPI:
        return None
    if name not in site.mpi.flavours:
        known = ", ".join([*site.mpi.flavours, NO_MPI])
        raise HpcctlError(f"unknown MPI flavour '{name}' for cluster '{site.cluster}'",
                          f"use --container-mpi with one of: {known}")
    return site.mpi.flavours[name]


def host_library(name: str, site: SiteConfig, flavour: MpiFlavour) -> tuple[str, abi.LibVersion]:
    """The host file for a configured library (a soname looked up in ldconfig -p, or an absolute path)."""
    if name.startswith("/"):
        listed = name
        if not os.path.exists(name):
            listed = ""
    else:
        hits = ldcache.find(name, site.gpu.ldconfig)
        hits = [h for h in hits if h.is_64bit] or hits
        listed = hits[0].path if hits else ""
    if not listed:
        raise HpcctlError(f"MPI flavour '{flavour.name}': host library {name} not found on this node",
                          f"install it or fix mpi.flavours.{flavour.name} in {site.path} (hpcctl site check)")
    real = os.path.realpath(listed)
    version = abi.parse_best(real, listed, name)
    if version is None:
        return real, abi.LibVersion(real, os.path.basename(real), ())
    return real, abi.LibVersion(real, version.linker, version.version)


def _soname(name: str, real: str) -> str:
    """The name the loader looks for: the configured soname, or the file's DT_SONAME for an absolute path."""
    if not name.startswith("/"):
        return name
    return elf.read(real).soname or os.path.basename(name)


def _other_flavours(site: SiteConfig, flavour: MpiFlavour) -> str:
    others = [n for n in site.mpi.flavours if n != flavour.name]
    choose = f", another flavour with --container-mpi={'|'.join(others)}" if others else ""
    return f"{choose}, or --container-mpi={NO_MPI} to use the image's own MPI"


def image_linkers(site: SiteConfig, choice: str | None) -> list[str]:
    """Linker names (libmpi.so) of the image libraries the step's flavour replaces, and its C library's."""
    flavour = select(site, choice)
    if flavour is None:
        return []
    parsed = [abi.parse(os.path.basename(name)) for name in flavour.libraries]
    return [*dict.fromkeys(p.linker for p in parsed if p), "libc.so"]


def _bind_library(name: str, site: SiteConfig, flavour: MpiFlavour, libs: ImageFacts, out: Injection) -> None:
    real, host = host_library(name, site, flavour)
    candidates = libs.named(host.linker)
    if not candidates:
        target = f"{LIBDIR}/{_soname(name, real)}"
        out.mounts.append(PlanMount(real, target, create="file",
                                    why=f"MPI '{flavour.name}' library {host.linker} {host.text} "
                                        "(the image has none)"))
        out.notes.append(f"the image has no {host.linker}; host {os.path.basename(real)} added in {LIBDIR}")
        return
    fitting = [c for c in candidates if abi.compatible(flavour.abi_check, host, c.version)]
    if not fitting:
        closest = next((c for c in candidates if c.version.major == host.major), candidates[0])
        abi.require(flavour.abi_check, host, closest.version, flavour.name, _other_flavours(site, flavour))
    chosen = fitting[0]
    out.mounts.append(PlanMount(real, chosen.real, create="file",
                                why=f"MPI '{flavour.name}': host {host.linker} {host.text} over the image's "
                                    f"{chosen.version.text} (abi_check {flavour.abi_check})"))


def _bind_dependency(name: str, site: SiteConfig, flavour: MpiFlavour, out: Injection) -> None:
    real, _ = host_library(name, site, flavour)
    target = f"{LIBDIR}/{_soname(name, real)}"
    out.mounts.append(PlanMount(real, target, create="file", why=f"MPI '{flavour.name}' dependency {name}"))


def _check_glibc(facts: ImageFacts, flavour: MpiFlavour, host_files: list[str]) -> None:
    if facts.glibc is None:
        return
    libc, provided = facts.glibc
    for path in host_files:
        wanted = glibc.needed(path)
        if wanted and wanted > provided:
            raise HpcctlError(
                f"host MPI '{flavour.name}' library {path} needs {glibc.text(wanted)} but the image's C library "
                f"{libc} provides up to {glibc.text(provided)}",
                f"use an image with glibc {'.'.join(map(str, wanted))} or newer, or --container-mpi={NO_MPI} to "
                "use the image's own MPI")


def flavour_binds(site: SiteConfig, flavour: MpiFlavour, step: StepInfo, out: Injection) -> None:
    """The flavour's extra binds (fabric devices under /dev/ among them)."""
    for mount in flavour.binds:
        planned = plan_mount(mount, step.node, f"MPI '{flavour.name}' bind", f"mpi.flavours.{flavour.name}.binds")
        if planned:
            out.mounts.append(planned)
        else:
            out.notes.append(f"optional MPI bind {mount.source.replace('%n', step.node)} not on this node; skipped")


def pmix_dirs(site: SiteConfig, step: StepInfo) -> list[tuple[str, str]]:
    """(path, why) of the directories Slurm's PMIx plugin makes for the step on this node: from slurm.conf's paths
    and the step's ids, never from the job's environment (PMIX_SERVER_TMPDIR there is the user's to set)."""
    job_step = f"{step.job_id}.{step.step_id}"
    return [(f"{site.slurm.spool_for(step.node)}/pmix.{job_step}", "PMIx server directory of the step"),
            (f"{site.slurm.tmpfs_for(step.node)}/spmix_appdir_{step.uid}_{job_step}", "PMIx application directory")]


def _pmix(site: SiteConfig, flavour: MpiFlavour, step: StepInfo, out: Injection) -> None:
    """The application directory lies in the node's world-writable TmpFS, where a user can plant a link under its
    name before the step: it is the user's, opened with their rights and without following links."""
    for index, (path, why) in enumerate(pmix_dirs(site, step)):
        if os.path.isdir(path):
            out.mounts.append(PlanMount(path, path, readonly=False, create="dir", as_user=index == 1, why=why))
        else:
            out.notes.append(f"{path} not present: bound only when the step runs under srun --mpi=pmix")
    for server, client in PMIX_ENV_MAP.items():
        if server in step.env and client not in flavour.env and client not in step.env:
            out.env.append(EnvOp("set", client, step.env[server], f"PMIx client setting from {server}"))


def plan(site: SiteConfig, step: StepInfo, facts: ImageFacts) -> Injection:
    """``facts``: read from the image for the names ``image_linkers`` gives."""
    out = Injection()
    flavour = select(site, step.mpi)
    if flavour is None:
        return out
    for name in flavour.libraries:
        _bind_library(name, site, flavour, facts, out)
    for name in flavour.dependencies:
        _bind_dependency(name, site, flavour, out)
    _check_glibc(facts, flavour, [m.source for m in out.mounts])
    out.ldconfig = True
    flavour_binds(site, flavour, step, out)
    if flavour.pmix:
        _pmix(site, flavour, step, out)
    out.env += [EnvOp("set", k, v, f"MPI '{flavour.name}' setting") for k, v in flavour.env.items()]
    if any(m.target.startswith(LIBDIR + "/") for m in out.mounts):
        out.env.append(EnvOp("prepend", "LD_LIBRARY_PATH", LIBDIR, f"MPI '{flavour.name}' host libraries"))
    return out
