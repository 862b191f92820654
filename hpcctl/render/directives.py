"""What a job spec means to Slurm: the #SBATCH directives, the plugin's --container-* options, the srun line.

A container job with one task runs its whole batch script inside the container (options as #SBATCH lines).
A job with several tasks or MPI keeps the batch script on the host and starts the tasks with
`srun --container-*`, because srun does not work inside the container.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from hpcctl.jobspec.model import JobSpec
from hpcctl.site.config import SiteConfig, parse_size


class Verbatim(str):
    """Text already written for its place in the script (an #SBATCH line's arguments, quoted sh words, the user's
    command as sh source): the template writes it as it is, and quotes every other value for sh."""


@dataclass(frozen=True)
class Launch:
    sbatch: tuple[Verbatim, ...]  # the text after "#SBATCH "
    environment: tuple[tuple[str, str], ...]  # exported before the command, in order; the template quotes them
    srun: tuple[Verbatim, ...] | None  # srun's options, or None when the batch script runs the command itself
    command: Verbatim  # sh source of what runs (per task under srun)
    per_task_shell: bool = False  # command is `sh -c '...'`: its $VARIABLES expand in each task


def uses_srun(job: JobSpec) -> bool:
    return job.tasks > 1 or job.mpi is not None


def sh_word(value) -> Verbatim:
    return Verbatim(shlex.quote(str(value)))


def sbatch_line(arg: str) -> Verbatim:
    return Verbatim(sbatch_quote(arg))


def sbatch_quote(arg: str) -> str:
    """One sbatch argument as an #SBATCH line must spell it. sbatch splits the line at blanks, ends it at an
    unquoted '#', and reads "..." and backslash escapes: '#' becomes '\\#' (nvcr.io#nvidia/x, as pyxis documents),
    a value with blanks, quotes or backslashes goes in double quotes."""
    if not re.search(r"[\s\"'\\]", arg):
        return arg.replace("#", "\\#")
    option, eq, value = arg.partition("=")
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{option}={quoted}" if eq else quoted


def plugin_image(image: str) -> str:
    """The pyxis/enroot form REGISTRY#IMAGE for a Docker-style reference with an explicit registry
    (127.0.0.1:5000/hpcctl/busybox -> 127.0.0.1:5000#hpcctl/busybox); other forms as written."""
    head, slash, rest = image.partition("/")
    explicit_registry = slash and ("." in head or ":" in head or head == "localhost")
    if "#" in image or "://" in image or image.startswith((".", "/")) or not explicit_registry:
        return image
    user, at, host = head.rpartition("@")
    return f"{user}{at}{host}#{rest}"


def container_options(job: JobSpec) -> list[str]:
    if not job.image:
        return []
    c = job.container
    opts = [f"--container-image={plugin_image(job.image)}"]
    if c.mounts:
        opts.append("--container-mounts=" + ",".join(m.option() for m in c.mounts))
    if c.workdir:
        opts.append(f"--container-workdir={c.workdir}")
    env_names = sorted(set(c.env) | (set(job.environment) if uses_srun(job) else set()))
    if env_names:
        opts.append("--container-env=" + ",".join(env_names))
    if c.writable is not None:
        opts.append("--container-writable" if c.writable else "--container-readonly")
    if c.entrypoint is not None:
        opts.append("--container-entrypoint" if c.entrypoint else "--no-container-entrypoint")
    if job.mpi is not None and job.mpi.flavour:
        opts.append(f"--container-mpi={job.mpi.flavour}")
    return opts


def host_mpi_env(job: JobSpec, site: SiteConfig) -> dict:
    """The MPI flavour's variables for a job on the host; in a container the plugin sets them."""
    if job.mpi is None or job.image:
        return {}
    flavour = site.mpi.flavours.get(job.mpi.flavour or site.mpi.default or "")
    return dict(flavour.env) if flavour else {}


def sbatch_directives(job: JobSpec) -> list[str]:
    res = job.resources
    options = {
        "job-name": job.name, "partition": res.partition, "account": res.account, "qos": res.qos,
        "nodes": res.nodes, "ntasks-per-node": res.tasks_per_node, "cpus-per-task": res.cpus_per_task,
        "mem": f"{-(-parse_size(res.memory) // 2**20)}M" if res.memory else None,
        "gres": f"gpu:{res.gpu_type + ':' if res.gpu_type else ''}{res.gpus}" if res.gpus else None,
        "time": res.time, "array": job.array, "output": job.output_pattern, "error": job.stderr,
    }
    return [f"--{name}={value}" for name, value in options.items() if value is not None] + list(job.sbatch_args)


def launch_for(job: JobSpec, site: SiteConfig) -> Launch:
    """Everything the template needs for ``job`` on ``site``, already quoted for its place in the script."""
    container = container_options(job)
    environment = {**host_mpi_env(job, site), **job.environment}
    sbatch = sbatch_directives(job)
    if not uses_srun(job):
        return Launch(sbatch=tuple(sbatch_line(o) for o in sbatch + container),
                      environment=tuple(environment.items()), srun=None, command=Verbatim(job.shell_command))
    srun = [f"--mpi={job.mpi.pmi}"] if job.mpi is not None else []
    per_task_shell = not isinstance(job.command, tuple)
    command = f"sh -c {shlex.quote(job.shell_command)}" if per_task_shell else job.shell_command
    return Launch(sbatch=tuple(sbatch_line(o) for o in sbatch), environment=tuple(environment.items()),
                  srun=tuple(sh_word(o) for o in srun + container), command=Verbatim(command),
                  per_task_shell=per_task_shell)
