"""Submission through pyslurm, used only where a pyslurm build for the installed Slurm imports.

pyslurm skips #SBATCH options it does not know and cannot pass SPANK options, so container jobs, --test-only
and submissions with extra sbatch arguments still go through sbatch. The job gets the same environment sbatch
would (inherited SBATCH_* variables already left out); pyslurm's own PYSLURM_JOBDESC_* variables are not read.
"""

from __future__ import annotations

import os

from hpcctl.slurm.commands import SUBMIT_FIX, CommandBackend, Submission, SubmitError, one_line


class PyslurmBackend(CommandBackend):
    name = "pyslurm"

    def __init__(self, module):
        self.pyslurm = module

    def submit(self, script: str, args: list[str], env: dict | None = None, cwd: str | None = None,
               test_only: bool = False) -> Submission:
        with open(script, encoding="utf-8") as fh:
            needs_sbatch = test_only or bool(args) or "--container-" in fh.read()
        if needs_sbatch:
            return super().submit(script, args, env=env, cwd=cwd, test_only=test_only)
        desc = self.pyslurm.JobSubmitDescription(script=script, working_directory=cwd or os.getcwd(),
                                                 environment=dict(os.environ if env is None else env))
        desc.load_sbatch_options()
        try:
            job_id = desc.submit()
        except (self.pyslurm.RPCError, ValueError) as exc:
            raise SubmitError(f"Slurm rejected the job: {one_line(str(exc))}", SUBMIT_FIX) from None
        return Submission(job_id=str(job_id), cluster=None, argv=("pyslurm.JobSubmitDescription", f"script={script}"))
