"""Read a job spec file: schema first, then the rules a schema cannot state; every problem at once, with file:line."""

from __future__ import annotations

import re

from hpcctl.errors import ConfigError
from hpcctl.jobspec.model import (
    DEPENDENCY_KINDS,
    ContainerOptions,
    Dependency,
    JobFile,
    JobSpec,
    MountSpec,
    MpiSpec,
    Resources,
)
from hpcctl.jobspec.schema import JOB_SCHEMA
from hpcctl.schema.validate import (
    Located,
    Problem,
    load_yaml,
    path_text,
    read_yaml_text,
    strings,
    unprintable,
    validate,
    without_problems,
)
from hpcctl.site.config import SiteConfig, parse_size

SCHEMA_FIX = "see `hpcctl schema` for the allowed keys"

# sbatch options hpcctl writes itself, and the spec key to use instead
MANAGED_OPTIONS = {
    "--job-name": "name", "-J": "name", "--partition": "resources.partition", "-p": "resources.partition",
    "--nodes": "resources.nodes", "-N": "resources.nodes", "--ntasks-per-node": "resources.tasks_per_node",
    "--cpus-per-task": "resources.cpus_per_task", "-c": "resources.cpus_per_task", "--mem": "resources.memory",
    "--gres": "resources.gpus and resources.gpu_type", "--gpus-per-node": "resources.gpus",
    "--time": "resources.time", "-t": "resources.time", "--account": "resources.account",
    "-A": "resources.account", "--qos": "resources.qos", "-q": "resources.qos", "--array": "array", "-a": "array",
    "--dependency": "dependencies", "-d": "dependencies", "--output": "outputs.stdout", "-o": "outputs.stdout",
    "--error": "outputs.stderr", "-e": "outputs.stderr",
}
MAX_MEMORY = 2**63 - 1  # bytes per node (8 EiB): far past any node, and what a signed 64-bit count holds


class _Report:
    def __init__(self, doc: Located):
        self.doc = doc
        self.problems: list[Problem] = []

    def add(self, path: tuple, message: str, fix: str) -> None:
        self.problems.append(Problem(self.doc.file, self.doc.line(path), path_text(path), f"{message} ({fix})"))


def load_job_file(path: str, defaults: dict | None = None, site: SiteConfig | None = None) -> JobFile:
    """Read, validate and type a spec; with ``site``, also check it against the site's limits, so that a spec's own
    problems and its site problems are reported together."""
    return parse_job_file(read_yaml_text(path, "check the path to the job spec"), path, defaults, site)


def parse_job_file(text: str, file: str, defaults: dict | None = None, site: SiteConfig | None = None) -> JobFile:
    """Validate and type a spec. ``defaults`` fill resources the spec leaves out (user config: partition...)."""
    doc = load_yaml(text, file)
    if doc.data is None:
        raise ConfigError([f"{file}:1: the job spec is empty"], "write at least `name:` and `command:`")
    schema_problems = validate(doc, JOB_SCHEMA)
    text_problems = _text_problems(doc)
    value_problems = _once_per_value(schema_problems, text_problems)
    if schema_problems:
        pruned = without_problems(doc, schema_problems)
        if pruned is None or validate(pruned, JOB_SCHEMA):
            raise ConfigError(_by_line(value_problems), SCHEMA_FIX)
        doc = pruned  # go on without the broken keys, so that the checks below report their problems too
    pipeline = isinstance(doc.data, list)
    raws = [(raw, (i,)) for i, raw in enumerate(doc.data)] if pipeline else [(doc.data, ())]
    report = _Report(doc)
    jobs = [_job(raw, at, defaults or {}, report) for raw, at in raws]
    _check_names_and_dependencies(jobs, pipeline, report)
    unique = len({j.name for j in jobs}) == len(jobs)
    ordered = _submission_order(jobs, report) if pipeline and unique else jobs
    loaded = JobFile(path=file, text=text, jobs=tuple(ordered), pipeline=pipeline, doc=doc)
    site_problems = []
    if site is not None and not text_problems:  # the site's checks would only quote the same broken values
        from hpcctl.jobspec.site_check import site_problems as check_site

        site_problems = check_site(loaded, site)
    found = value_problems + report.problems + site_problems
    if found:
        raise ConfigError(_by_line(found), f"site config: {site.path}" if site_problems else SCHEMA_FIX)
    return loaded


def _by_line(problems: list[Problem]) -> list[str]:
    return [str(p) for p in sorted(problems, key=lambda p: p.line)]


def _once_per_value(schema_problems: list[Problem], text_problems: list[Problem]) -> list[Problem]:
    """Both, but for a value with both only its text problem: 'contains a line break' says more than 'is not an
    absolute path'."""
    texts = {p.path for p in text_problems}
    return [p for p in schema_problems if p.path not in texts] + text_problems


def _text_problems(doc: Located) -> list[Problem]:
    """Values with a line break or a control character, which in an #SBATCH line or the command would end the line
    and start another; only `script:` has several lines."""
    problems = []
    for path, text in strings(doc.data):
        key = next((part for part in path if isinstance(part, str)), "")  # the job's key: 'command' for [0].command[1]
        found = unprintable(text, line_breaks=key == "script")
        if found:
            bad, fix = found
            if key == "command" and bad == "a line break":
                fix += ", or as several lines under `script:`"
            problems.append(Problem(doc.file, doc.line(path), path_text(path), f"contains {bad} ({fix})"))
    return problems


def _job(raw: dict, at: tuple, defaults: dict, report: _Report) -> JobSpec:
    if ("command" in raw) == ("script" in raw):
        report.add(at + ("name",), "needs exactly one of 'command' or 'script'" if "command" in raw
                   else "has neither 'command' nor 'script'",
                   "write `command:` for one line or an argv list, `script:` for several lines")
    if "container" in raw and "image" not in raw:
        report.add(at + ("container",), "container options without an image",
                   "add `image:` or remove `container:`")
    defaulted = {k: v for k, v in defaults.items()
                 if k in Resources.__dataclass_fields__ and k not in raw.get("resources", {})}
    res = {**defaulted, **raw.get("resources", {})}
    if "memory" in res:
        _check_memory(res["memory"], at + ("resources", "memory"), report)
    if "gpu_type" in res and not res.get("gpus"):
        report.add(at + ("resources", "gpu_type"), "gpu_type without gpus", "set resources.gpus to 1 or more")
    for i, arg in enumerate(raw.get("sbatch_args", ())):
        _check_sbatch_arg(arg, at + ("sbatch_args", i), report)
    container = raw.get("container", {})
    command = raw.get("command")
    return JobSpec(
        name=raw["name"], at=at, image=raw.get("image"),
        command=tuple(command) if isinstance(command, list) else command, script=raw.get("script"),
        resources=Resources(**{k: (str(v) if k == "memory" else v) for k, v in res.items()}),
        mpi=MpiSpec(**raw["mpi"]) if "mpi" in raw else None,
        container=ContainerOptions(mounts=tuple(MountSpec.parse(m) for m in container.get("mounts", ())),
                                   workdir=container.get("workdir"), env=tuple(container.get("env", ())),
                                   writable=container.get("writable"), entrypoint=container.get("entrypoint")),
        environment={k: _env_value(v) for k, v in raw.get("environment", {}).items()},
        array=str(raw["array"]) if "array" in raw else None,
        dependencies=tuple(Dependency(kind, str(t)) for kind in DEPENDENCY_KINDS
                           for t in raw.get("dependencies", {}).get(kind, ())),
        stdout=raw.get("outputs", {}).get("stdout"), stderr=raw.get("outputs", {}).get("stderr"),
        sbatch_args=tuple(raw.get("sbatch_args", ())), defaulted=tuple(defaulted))


def _check_sbatch_arg(arg: str, where: tuple, report: _Report) -> None:
    long = arg.startswith("--")
    option = re.split(r"[=\s]", arg, maxsplit=1)[0] if long else arg[:2]
    if option in MANAGED_OPTIONS:
        report.add(where, f"'{option}' is written by hpcctl", f"set {MANAGED_OPTIONS[option]} instead")
    elif option.startswith("--container-"):
        report.add(where, f"'{option}' is written by hpcctl", "use image: and container:")
    elif re.search(r"\s", arg.split("=", 1)[0]):
        value = arg[len(option):].strip()
        report.add(where, f"'{arg}' has a blank between option and value",
                   f"write it as one item: {option}{'=' if long else ''}{value}")


def _check_memory(memory: str | int, where: tuple, report: _Report) -> None:
    try:
        too_much = parse_size(memory) > MAX_MEMORY
    except OverflowError:  # more digits than a float holds
        too_much = True
    if too_much:
        report.add(where, "more than 8 EiB", "ask for at most 8 EiB per node")


def _env_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _dependency_path(job: JobSpec, dep: Dependency, raw_index: int) -> tuple:
    return job.at + ("dependencies", dep.kind, raw_index)


def _check_names_and_dependencies(jobs: list[JobSpec], pipeline: bool, report: _Report) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            report.add(job.at + ("name",), f"job name '{job.name}' is used twice in this pipeline",
                       "give every job its own name")
        seen.add(job.name)
    names = {j.name for j in jobs}
    for job in jobs:
        per_kind: dict[str, int] = {}
        for dep in job.dependencies:
            index = per_kind[dep.kind] = per_kind.get(dep.kind, -1) + 1
            if dep.is_job_id:
                continue
            where = _dependency_path(job, dep, index)
            if not pipeline:
                report.add(where, f"'{dep.target}' is not a job id",
                           "name other jobs only in a pipeline (a list of jobs); here use a Slurm job id")
            elif dep.target == job.name:
                report.add(where, f"job '{job.name}' depends on itself", "remove this dependency")
            elif dep.target not in names:
                report.add(where, f"no job named '{dep.target}' in this pipeline",
                           f"use one of: {', '.join(sorted(names - {job.name})) or 'no other jobs'}")


def _submission_order(jobs: list[JobSpec], report: _Report) -> list[JobSpec]:
    """Jobs with their dependencies first, file order otherwise; a cycle is reported, not submitted."""
    by_name = {j.name: j for j in jobs}
    ordered: list[JobSpec] = []
    state: dict[str, str] = {}

    def visit(job: JobSpec, trail: list[str]) -> None:
        if state.get(job.name) == "done":
            return
        if state.get(job.name) == "active":
            cycle = trail[trail.index(job.name):] + [job.name]
            report.add(job.at + ("dependencies",), f"dependency cycle: {' -> '.join(cycle)}",
                       "remove one dependency of the cycle")
            return
        state[job.name] = "active"
        for dep in job.dependencies:
            target = by_name.get(dep.target)
            if target is not None and target is not job and not dep.is_job_id:
                visit(target, trail + [job.name])
        state[job.name] = "done"
        ordered.append(job)

    for job in jobs:
        visit(job, [])
    return ordered
