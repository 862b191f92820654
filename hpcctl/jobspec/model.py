"""Typed job specs: what the loader builds from validated YAML and what rendering and submission trust."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from hpcctl.schema.validate import Located

DEPENDENCY_KINDS = ("after", "afterok", "afterany", "afternotok", "aftercorr")


@dataclass(frozen=True)
class Resources:
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int | None = None
    memory: str | None = None
    gpus: int = 0
    gpu_type: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None


@dataclass(frozen=True)
class MountSpec:
    source: str
    target: str
    readonly: bool = False

    @classmethod
    def parse(cls, raw: str | dict) -> "MountSpec":
        if isinstance(raw, dict):
            return cls(raw["source"], raw.get("target", raw["source"]), raw.get("readonly", False))
        parts = raw.split(":")
        flags = parts.pop() if parts[-1] in ("ro", "rw") else "rw"
        return cls(parts[0], parts[1] if len(parts) > 1 else parts[0], flags == "ro")

    def option(self) -> str:
        """The plugin's SRC:DST[:ro] form."""
        return f"{self.source}:{self.target}" + (":ro" if self.readonly else "")


@dataclass(frozen=True)
class ContainerOptions:
    mounts: tuple[MountSpec, ...] = ()
    workdir: str | None = None
    env: tuple[str, ...] = ()
    writable: bool | None = None
    entrypoint: bool | None = None


@dataclass(frozen=True)
class MpiSpec:
    flavour: str | None = None
    pmi: str = "pmix"


@dataclass(frozen=True)
class Dependency:
    kind: str
    target: str  # a Slurm job id, or the name of a job in the same pipeline

    @property
    def is_job_id(self) -> bool:
        return self.target.replace("_", "").isdigit()


@dataclass(frozen=True)
class JobSpec:
    name: str
    at: tuple  # where this job sits in its file: () for a single job, (index,) in a pipeline
    image: str | None = None
    command: str | tuple[str, ...] | None = None
    script: str | None = None
    resources: Resources = Resources()
    mpi: MpiSpec | None = None
    container: ContainerOptions = ContainerOptions()
    environment: dict = field(default_factory=dict)
    array: str | None = None
    dependencies: tuple[Dependency, ...] = ()
    stdout: str | None = None
    stderr: str | None = None
    sbatch_args: tuple[str, ...] = ()
    defaulted: tuple[str, ...] = ()  # resources taken from the user's config defaults, not from the spec

    @property
    def tasks(self) -> int:
        return self.resources.nodes * self.resources.tasks_per_node

    @property
    def shell_command(self) -> str:
        """The command as sh source: an argv list is quoted, a string or script is used as written."""
        if isinstance(self.command, tuple):
            return shlex.join(self.command)
        return (self.command if self.command is not None else self.script or "").rstrip("\n")

    @property
    def output_pattern(self) -> str:
        return self.stdout or (f"{self.name}-%A_%a.out" if self.array is not None else f"{self.name}-%j.out")


@dataclass(frozen=True)
class JobFile:
    """A loaded spec file: one job, or a pipeline in submission order (dependencies first)."""

    path: str
    text: str
    jobs: tuple[JobSpec, ...]
    pipeline: bool
    doc: Located = field(repr=False, compare=False, default=None)

    def job(self, name: str) -> JobSpec:
        return next(j for j in self.jobs if j.name == name)
