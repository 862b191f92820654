"""The one interface to Slurm, through its commands: sbatch, squeue, scontrol, sacct, scancel.

Status works without accounting: squeue first (it knows jobs until MinJobAge after their end), then
`scontrol show job`, then sacct where slurmdbd answers. Slurm is asked only for the jobs in question: squeue --json
of 22.05 ignores every filter and prints all jobs of all users, so squeue prints named fields instead.
Slurm's output is bytes (other users choose job names and directories): decoded as UTF-8 with surrogateescape, so
no byte can fail a command and a path still opens the file it names.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from hpcctl.errors import HpcctlError
from hpcctl.slurm.jobs import SQUEUE_FORMAT, JobInfo, from_sacct_line, from_scontrol_line, parse_parsable, split_squeue

SLURM_TIMEOUT_S = 60
SUBMIT_FIX = "fix the spec or the site limits; `hpcctl submit --test-only` checks without queuing"


@dataclass(frozen=True)
class Submission:
    job_id: str
    cluster: str | None
    argv: tuple[str, ...]
    message: str = ""  # what sbatch said on stderr (warnings, --test-only's estimate)


def one_line(text: str) -> str:
    """A command's stderr as one line for an error message."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class SubmitError(HpcctlError):
    exit_code = 3


def run(argv: list[str], env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        raise HpcctlError(f"'{argv[0]}' not found", "install the Slurm client commands or fix PATH")
    try:
        return subprocess.run(argv, capture_output=True, encoding="utf-8", errors="surrogateescape", env=env, cwd=cwd,
                              timeout=SLURM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise HpcctlError(f"'{' '.join(argv[:2])}' did not answer in {SLURM_TIMEOUT_S} s",
                          "check that slurmctld is up (scontrol ping)") from None


class CommandBackend:
    name = "commands"

    def submit(self, script: str, args: list[str], env: dict | None = None, cwd: str | None = None,
               test_only: bool = False) -> Submission:
        argv = ["sbatch", *(["--test-only"] if test_only else ["--parsable"]), *args, script]
        result = run(argv, env=env, cwd=cwd)
        message = one_line(result.stderr)
        if result.returncode != 0:
            raise SubmitError(f"sbatch rejected the job: {message or 'exit ' + str(result.returncode)}", SUBMIT_FIX)
        if test_only:
            return Submission(job_id="", cluster=None, argv=tuple(argv), message=message)
        job_id, cluster = parse_parsable(result.stdout)
        return Submission(job_id=job_id, cluster=cluster, argv=tuple(argv), message=message)

    def jobs(self, refs: list[str], mine: bool = False) -> list[JobInfo]:
        """The jobs or array tasks named, in any state slurmctld still remembers. slurmctld sends a job asked for
        alone by itself, and for several jobs every job (squeue filters them): so several of the caller's own jobs
        (``mine``) are one call with --me, which makes slurmctld send only the caller's jobs, and other jobs are
        asked for one by one."""
        if mine and len(refs) > 1:
            return self._squeue(refs, ("--me",))
        found = {job.job_id: job for ref in dict.fromkeys(refs) for job in self._squeue([ref])}
        return list(found.values())

    def _squeue(self, refs: list[str], extra: tuple[str, ...] = ()) -> list[JobInfo]:
        result = run(["squeue", "--noheader", "--states=all", f"--Format={SQUEUE_FORMAT}", "--jobs=" + ",".join(refs),
                      *extra])
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:  # a single job slurmctld no longer knows
                return []
            raise HpcctlError(f"squeue failed: {one_line(result.stderr)}", "check that slurmctld is up (scontrol ping)")
        return split_squeue(result.stdout)

    def show(self, job_id: str) -> list[JobInfo]:
        result = run(["scontrol", "-o", "show", "job", job_id])
        if result.returncode != 0:
            return []
        return [from_scontrol_line(line) for line in result.stdout.splitlines() if line.startswith("JobId=")]

    def accounting(self, job_id: str) -> list[JobInfo]:
        """sacct's view, or [] where there is no sacct or no slurmdbd behind it."""
        if shutil.which("sacct") is None:
            return []
        result = run(["sacct", "-X", "-P", "-n", "-o", "JobID,JobName,State,ExitCode,NodeList", "-j", job_id])
        if result.returncode != 0:
            return []
        return [from_sacct_line(line) for line in result.stdout.splitlines() if line.strip()]

    def status(self, refs: list[str], mine: bool = False) -> dict[str, list[JobInfo]]:
        """Every job or array task for each reference; an empty list where no source knows it any more."""
        queue = self.jobs(refs, mine)
        found: dict[str, list[JobInfo]] = {}
        for ref in refs:
            jobs = [j for j in queue if j.matches(ref)] or self.show(ref) or self.accounting(ref)
            found[ref] = jobs
        return found

    def cancel(self, refs: list[str]) -> None:
        """scancel exits 0 for unknown or finished jobs; only -v makes it say so."""
        result = run(["scancel", "-v", *refs])
        errors = [line.split("error:", 1)[1].strip() for line in result.stderr.splitlines() if "error:" in line]
        if result.returncode != 0 or errors:
            raise HpcctlError(f"scancel failed: {'; '.join(errors) or one_line(result.stderr)}",
                              "check the job ids with `hpcctl status` or `hpcctl list`")
