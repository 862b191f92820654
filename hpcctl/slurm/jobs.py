"""Slurm's answers, parsed: `sbatch --parsable` ids, `squeue --json` records, `scontrol -o show job` lines."""

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


def from_squeue(record: dict) -> JobInfo:
    array_job, task = record.get("array_job_id") or 0, record.get("array_task_id")
    job_id = str(record["job_id"])
    if array_job and task is not None:
        shown = f"{array_job}_{task}"
    elif array_job and record.get("array_task_string"):
        shown = f"{array_job}_[{record['array_task_string']}]"
    else:
        shown = job_id
    status = int(record.get("exit_code") or 0)
    node = (record.get("batch_host") or record.get("nodes") or "")
    stdout = record.get("standard_output") or ""
    if stdout:
        stdout = expand_output(stdout, record.get("current_working_directory", ""), job_id, str(array_job or ""),
                               "" if task is None else str(task), record.get("name", ""),
                               record.get("user_name", ""), node)
    return JobInfo(job_id=shown, name=record.get("name", ""), state=record.get("job_state", "UNKNOWN"),
                   reason=record.get("state_reason", ""), exit_code=f"{status >> 8}:{status & 0x7f}",
                   nodes=record.get("nodes", ""), stdout=stdout, source="squeue")


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
