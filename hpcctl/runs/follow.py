"""Follow jobs: resolve ids or bundles, poll until they end, find and print (or tail) their output files."""

from __future__ import annotations

import glob
import os
import sys
import time
from dataclasses import dataclass

from hpcctl.errors import HpcctlError
from hpcctl.runs import bundle as bundles
from hpcctl.slurm.commands import CommandBackend
from hpcctl.slurm.jobs import JOB_REF, JobInfo, expand_output, split_ref

BLOCKED_REASONS = {"DependencyNeverSatisfied"}  # pending forever: a dependency failed
FIRST_POLL_S, POLL_GROWTH, LAST_POLL_S = 0.5, 1.5, 5.0  # Slurm is asked again after 0.5 s, then ever less often
FILE_POLL_S = 1.0  # output files are local: read at this pace whatever the Slurm polls do


@dataclass(frozen=True)
class Target:
    """What the user named: a job id (maybe an array task) and the run bundle that submitted it, if any."""

    ref: str
    record: bundles.RunRecord | None


def resolve(refs: list[str]) -> list[Target]:
    targets = []
    for ref in refs:
        found = bundles.find(ref)
        if JOB_REF.fullmatch(ref):
            targets.append(Target(ref, found.record() if found else None))
            continue
        if found is None:
            raise HpcctlError(f"'{ref}' is neither a job id nor a run bundle",
                              f"give a job id such as 123 or 123_4, or a directory under {bundles.runs_dir()}")
        record = found.record()
        if not record.job_id:
            raise HpcctlError(f"{ref}: the run bundle has no job id", "submit the spec again")
        targets.append(Target(record.job_id, record))
    return targets


def settled(jobs: list[JobInfo]) -> bool:
    return bool(jobs) and all(not j.active or (j.state == "PENDING" and j.reason in BLOCKED_REASONS)
                              for j in jobs)


def polls():
    """Delays between two questions to Slurm: growing from FIRST_POLL_S to at most LAST_POLL_S."""
    delay = FIRST_POLL_S
    while True:
        yield delay
        delay = min(delay * POLL_GROWTH, LAST_POLL_S)


def wait_for(backend: CommandBackend, refs: list[str], timeout: float | None = None) -> dict[str, list[JobInfo]]:
    """Poll (one squeue call for the caller's jobs per round, backing off) until every job has ended."""
    deadline = time.monotonic() + timeout if timeout else None
    for delay in polls():
        found = backend.status(refs, mine=True)
        if all(settled(jobs) or not jobs for jobs in found.values()):
            return found
        if deadline and time.monotonic() > deadline:
            raise HpcctlError(f"jobs {', '.join(refs)} still running after {timeout:.0f} s",
                              "follow them with `hpcctl status` or `hpcctl logs -f`")
        time.sleep(delay)


def output_paths(target: Target, jobs: list[JobInfo]) -> list[tuple[str, str]]:
    """(label, path) per job or array task: Slurm's paths while it knows the job, else the bundle's pattern."""
    known = [(j.job_id, j.stdout) for j in jobs if j.stdout and "[" not in j.job_id]
    if known:
        return known
    record = target.record
    if record is None:
        return []
    job_id, task = split_ref(target.ref)
    user = os.environ.get("USER", "")
    pattern = expand_output(record.output, record.workdir, job_id, job_id, task or "\0", record.job_name, user, "*")
    paths = sorted(glob.glob(pattern.replace("\0", "*"))) if "\0" in pattern or "*" in pattern else [pattern]
    return [(target.ref, p) for p in paths]


def print_outputs(targets: list[Target], found: dict[str, list[JobInfo]], out=None) -> None:
    out = out or sys.stdout
    for target in targets:
        states = {j.job_id: j for j in found.get(target.ref, [])}
        for label, path in output_paths(target, found.get(target.ref, [])):
            info = states.get(label)
            head = f"==> {label}" + (f" {info.name} {info.state} exit {info.exit_code}" if info else "")
            out.write(f"{head} ({path}) <==\n")
            try:
                with open(path, errors="replace") as fh:
                    out.write(fh.read())
            except OSError as exc:
                out.write(f"(no output file: {exc.strerror})\n")
    out.flush()


def tail(backend: CommandBackend, targets: list[Target], out=None) -> dict[str, list[JobInfo]]:
    """Print output as it grows until every job has ended (`hpcctl logs -f`)."""
    out = out or sys.stdout
    offsets: dict[str, int] = {}
    refs = [t.ref for t in targets]
    delays = polls()
    next_poll = 0.0
    while True:
        if time.monotonic() >= next_poll:
            found = backend.status(refs)
            finished = all(settled(jobs) or not jobs for jobs in found.values())
            next_poll = time.monotonic() + next(delays)
        paths = [p for t in targets for p in output_paths(t, found.get(t.ref, []))]
        for label, path in paths:
            offsets[path] = _print_new(path, offsets.get(path, 0), label if len(paths) > 1 else "", out)
        if finished:
            return found
        time.sleep(min(FILE_POLL_S, max(0.0, next_poll - time.monotonic())))


def _print_new(path: str, offset: int, label: str, out) -> int:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return offset
    text = data.decode(errors="replace")
    if label:
        text = "".join(f"[{label}] {line}" for line in text.splitlines(keepends=True))
    out.write(text)
    out.flush()
    return offset + len(data)
