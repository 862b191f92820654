"""Check jobs against the site config before anything reaches Slurm: partition, limits, GPU type, mounts, MPI."""

from __future__ import annotations

from hpcctl.errors import ConfigError
from hpcctl.jobspec.model import JobFile, JobSpec
from hpcctl.schema.validate import Located, Problem, path_text
from hpcctl.site.config import Partition, SiteConfig, parse_duration


def format_duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def partition_for(job: JobSpec, site: SiteConfig) -> Partition | None:
    if job.resources.partition:
        return site.partitions.get(job.resources.partition)
    return site.default_partition()


def site_problems(jobs: JobFile, site: SiteConfig) -> list[Problem]:
    return [p for job in jobs.jobs for p in _check_job(job, site, jobs.doc)]


def check_job_file(jobs: JobFile, site: SiteConfig) -> None:
    """Raise ConfigError listing every way the jobs break the site's rules."""
    problems = site_problems(jobs, site)
    if problems:
        raise ConfigError([str(p) for p in sorted(problems, key=lambda p: p.line)],
                          f"site config: {site.path}")


def _check_job(job: JobSpec, site: SiteConfig, doc: Located) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: tuple, message: str, fix: str) -> None:
        if path[0] == "resources" and path[-1] in job.defaulted:
            message += " (your config default: `hpcctl config show`)"
        full = job.at + path
        problems.append(Problem(doc.file, doc.line(full), path_text(full), f"{message} ({fix})"))

    res = job.resources
    partition = partition_for(job, site)
    if res.partition and partition is None and site.partitions:
        add(("resources", "partition"), f"partition '{res.partition}' does not exist on cluster '{site.cluster}'",
            f"use one of: {', '.join(site.partitions)}")
    if partition is not None:
        _check_limits(job, partition, add)
    _check_mounts(job, site, add)
    flavour = job.mpi.flavour if job.mpi else None
    if flavour and flavour != "none" and flavour not in site.mpi.flavours:
        add(("mpi", "flavour"), f"MPI flavour '{flavour}' is not offered on cluster '{site.cluster}'",
            f"use one of: {', '.join([*site.mpi.flavours, 'none'])}")
    return problems


def _check_limits(job: JobSpec, partition: Partition, add) -> None:
    res = job.resources
    name = partition.name
    if res.time and partition.max_time is not None:
        wanted = parse_duration(res.time)
        if wanted is None or wanted > partition.max_time:
            limit = format_duration(partition.max_time)
            add(("resources", "time"), f"time {res.time} exceeds partition '{name}' limit {limit}",
                f"ask for at most {limit}")
    if partition.max_nodes is not None and res.nodes > partition.max_nodes:
        add(("resources", "nodes"), f"{res.nodes} nodes exceed partition '{name}' limit of {partition.max_nodes}",
            f"ask for at most {partition.max_nodes}")
    if res.gpus and partition.max_gpus_per_node is not None and res.gpus > partition.max_gpus_per_node:
        add(("resources", "gpus"),
            f"{res.gpus} GPUs per node exceed partition '{name}' limit of {partition.max_gpus_per_node}",
            f"ask for at most {partition.max_gpus_per_node}" if partition.max_gpus_per_node
            else "pick a partition with GPUs")
    if res.gpu_type and partition.gpu_types and res.gpu_type not in partition.gpu_types:
        add(("resources", "gpu_type"), f"GPU type '{res.gpu_type}' is not in partition '{name}'",
            f"use one of: {', '.join(partition.gpu_types)}")


def _check_mounts(job: JobSpec, site: SiteConfig, add) -> None:
    policy = site.user_mounts
    for i, mount in enumerate(job.container.mounts):
        where = ("container", "mounts", i)
        if not policy.allow:
            add(where, f"cluster '{site.cluster}' does not allow user mounts", "remove container.mounts")
            continue
        denied = next((p for p in policy.deny_prefixes
                       if mount.source == p or mount.source.startswith(p.rstrip("/") + "/")), None)
        if denied:
            add(where, f"mounting {mount.source} is not allowed: {denied} is reserved by the site",
                "mount a directory outside " + ", ".join(policy.deny_prefixes))
