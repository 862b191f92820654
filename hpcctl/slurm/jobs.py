"""Slurm's answers, parsed: `sbatch --parsable` ids, squeue records, `scontrol -o show job` lines."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

from hpcctl.errors import HpcctlError

ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                 "SIGNALING", "STAGE_OUT", "STOPPED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
JOB_REF = re.compile(r"(\d+)(?:_(\d+))?")


def parse_parsable(stdout: str) -> tuple[str, str | None]:
    """`sbatch --parsable` prints JOBID or JOBID;CLUSTER (a semicolon, not a colon or comma)."""
    text = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    match = re.fullmatch(r"(\d+)(?:;(\S+))?", text)
    if not match:
        raise HpcctlError(f"cannot read a job id from sbatch's output {stdout.strip()!r}",
                          "check that sbatch accepted the job (run it with --test-only)")
    return match.group(1), match.group(2)


def split_ref(ref: str) -> tuple[str, str | None]:
    """'123' -> ('123', None); '123_4' -> ('123', '4'): a job, or one task of an array."""
    match = JOB_REF.fullmatch(ref.strip())
    if not match:
        raise HpcctlError(f"'{ref}' is not a job id", "give a job id such as 123 or 123_4, or a run bundle path")
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class JobInfo:
    """One job, or one task of an array, as squeue, scontrol or sacct last reported it."""

    job_id: str  # the id users type: 123, or 123_4 for an array task
    name: str
    state: str
    reason: str = ""
    exit_code: str = ""  # CODE:SIGNAL as Slurm prints it
    nodes: str = ""
    stdout: str = ""  # absolute path with %-patterns expanded, when known
    source: str = ""  # squeue, scontrol or sacct

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def matches(self, ref: str) -> bool:
        job, task = split_ref(ref)
        own_job, _, own_task = self.job_id.partition("_")
        return own_job == job and (task is None or own_task == task) or self.job_id == ref

    def to_dict(self) -> dict:
        return asdict(self)


def expand_output(pattern: str, workdir: str, job_id: str, array_job: str, task: str, name: str,
                  user: str, node: str) -> str:
    """Slurm's filename patterns (%j %A %a %x %u %N %%) and relative paths, as slurmd resolves them."""
    values = {"j": job_id, "A": array_job or job_id, "a": task or "4294967294", "x": name, "u": user,
              "N": node, "%": "%"}
    text = re.sub(r"%(\d*)([jAaxuN%])", lambda m: values[m.group(2)].zfill(int(m.group(1) or 0)), pattern)
    return text if text.startswith("/") else os.path.join(workdir, text)


# squeue --Format fields, each ended by a unit separator and a record by a record separator: names, directories and
# paths are free text (even newlines), so they come last, and a record whose free text holds a separator keeps only
# its fixed fields
SQUEUE_FIELDS = ("JobID", "JobArrayID", "State", "Reason", "exit_code", "NodeList", "BatchHost", "UserName",
                 "WorkDir", "Name", "STDOUT")
FIXED_FIELDS = 8
SQUEUE_FORMAT = ",".join(f"{field}:\x1f" for field in SQUEUE_FIELDS[:-1]) + f",{SQUEUE_FIELDS[-1]}:\x1e"


def split_squeue(stdout: str) -> list[JobInfo]:
    """Every record of `squeue --noheader --Format=SQUEUE_FORMAT` (a piece of free text that looks like no record
    is left out)."""
    records = [record.lstrip("\n").split("\x1f") for record in stdout.split("\x1e")[:-1]]
    return [from_squeue(fields) for fields in records if len(fields) >= FIXED_FIELDS and fields[0].isdigit()]


def from_squeue(fields: list[str]) -> JobInfo:
    job_id, shown, state, reason, status, nodes, batch_host, user = fields[:FIXED_FIELDS]
    workdir, name, stdout = fields[FIXED_FIELDS:] if len(fields) == len(SQUEUE_FIELDS) else ("", "", "")
    array_job, _, task = shown.partition("_")
    code = int(status) if status.isdigit() else 0
    if stdout:
        node = batch_host if batch_host != "n/a" else ""
        task = task if task.isdigit() else ""
        stdout = expand_output(stdout, workdir, job_id, array_job if task else "", task, name, user, node)
    return JobInfo(job_id=shown, name=name, state=state, reason=reason, exit_code=f"{code >> 8}:{code & 0x7f}",
                   nodes=nodes, stdout=stdout, source="squeue")


def from_scontrol_line(line: str) -> JobInfo:
    fields = dict(re.findall(r"(\S+?)=(\S*)", line))
    task = fields.get("ArrayTaskId")
    array_job = fields.get("ArrayJobId")
    shown = f"{array_job}_{task}" if array_job and task and task.isdigit() else fields.get("JobId", "")
    return JobInfo(job_id=shown, name=fields.get("JobName", ""), state=fields.get("JobState", "UNKNOWN"),
                   reason=fields.get("Reason", ""), exit_code=fields.get("ExitCode", ""),
                   nodes=fields.get("NodeList", ""), stdout=fields.get("StdOut", ""), source="scontrol")


def from_sacct_line(line: str) -> JobInfo:
    """One `sacct -P -n -o JobID,JobName,State,ExitCode,NodeList` line."""
    job_id, name, state, exit_code, nodes = (line.split("|") + [""] * 5)[:5]
    return JobInfo(job_id=job_id, name=name, state=state.split()[0] if state else "UNKNOWN",
                   exit_code=exit_code, nodes=nodes, source="sacct")
