"""Submit a spec file: check it against the site, render each job, sbatch it (dependencies first), keep a bundle."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

from hpcctl import __version__
from hpcctl.errors import HpcctlError
from hpcctl.jobspec.model import JobFile, JobSpec
from hpcctl.jobspec.site_check import check_job_file
from hpcctl.render.script import render_job
from hpcctl.runs import bundle as bundles
from hpcctl.site.config import SiteConfig
from hpcctl.slurm.commands import CommandBackend

# What an inherited SBATCH_* variable would silently change (sbatch lets them override #SBATCH lines)
SBATCH_ENV_EFFECT = {
    "SBATCH_PARTITION": "the partition", "SBATCH_ACCOUNT": "the account", "SBATCH_QOS": "the QoS",
    "SBATCH_TIMELIMIT": "the time limit", "SBATCH_GRES": "the GPUs", "SBATCH_GPUS": "the GPUs",
    "SBATCH_MEM_PER_NODE": "the memory", "SBATCH_EXPORT": "the job's environment",
    "SBATCH_ARRAY_INX": "the array", "SBATCH_JOB_NAME": "the job name", "SBATCH_CONTAINER": "the container",
}


@dataclass(frozen=True)
class Submitted:
    job: JobSpec
    job_id: str
    cluster: str | None
    bundle: str
    argv: tuple[str, ...]
    message: str = ""

    def to_dict(self) -> dict:
        return {"name": self.job.name, "job_id": self.job_id, "cluster": self.cluster, "bundle": self.bundle,
                "command": list(self.argv), "message": self.message}


def sbatch_environment(keep: bool) -> tuple[dict, dict]:
    """(environment for sbatch, SBATCH_* variables left out of it); warns about each on stderr."""
    inherited = {k: v for k, v in os.environ.items() if k.startswith("SBATCH_")}
    for name, value in sorted(inherited.items()):
        effect = SBATCH_ENV_EFFECT.get(name, "an sbatch option")
        verb = "applies" if keep else "ignored"
        hint = "" if keep else "; pass --keep-sbatch-env to apply it"
        print(f"hpcctl: warning: {name}={value} from your shell would change {effect} ({verb}{hint})",
              file=sys.stderr)
    if keep:
        return dict(os.environ), {}
    return {k: v for k, v in os.environ.items() if k not in inherited}, inherited


def image_digests(jobs: JobFile, site: SiteConfig) -> dict[str, str | None]:
    """Each image's digest, resolved once before anything is queued: a missing image or refused credentials stop
    the submission; an unreachable registry only leaves the digest out of the run bundle."""
    from hpcctl.image.api import resolve
    from hpcctl.image.errors import RegistryError, RegistryUnreachable

    digests: dict[str, str | None] = {}
    for image in sorted({j.image for j in jobs.jobs if j.image}):
        try:
            digests[image] = resolve(image, site).digest or None
        except (RegistryUnreachable, RegistryError) as exc:
            print(f"hpcctl: warning: no digest for {image} ({exc}); the run bundle records the reference only",
                  file=sys.stderr)
            digests[image] = None
    return digests


def dependency_args(job: JobSpec, ids: dict[str, str]) -> tuple[list[str], dict]:
    """--dependency for sbatch: pipeline names replaced by the job ids they got in this submission."""
    by_kind: dict[str, list[str]] = {}
    for dep in job.dependencies:
        by_kind.setdefault(dep.kind, []).append(dep.target if dep.is_job_id else ids[dep.target])
    if not by_kind:
        return [], {}
    return ["--dependency=" + ",".join(f"{k}:{':'.join(v)}" for k, v in by_kind.items())], by_kind


def dry_run_commands(jobs: JobFile) -> list[str]:
    placeholders = {j.name: f"<job id of {j.name}>" for j in jobs.jobs}
    return [" ".join(["sbatch", "--parsable", *dependency_args(j, placeholders)[0],
                      f"<run bundle of {j.name}>/job.sh"]) for j in jobs.jobs]


def make_output_dirs(job: JobSpec, cwd: str) -> None:
    """Slurm does not create the directory of --output/--error; a job writing into a missing one loses its output."""
    for pattern in (job.output_pattern, job.stderr or ""):
        folder = os.path.dirname(pattern)
        if folder and "%" not in folder:
            try:
                os.makedirs(os.path.join(cwd, folder), exist_ok=True)
            except OSError as exc:
                raise HpcctlError(f"cannot make the output directory {folder} of job '{job.name}': {exc.strerror}",
                                  "set outputs.stdout and outputs.stderr to a directory you can write") from None


def _test_only(job: JobSpec, script: str, backend: CommandBackend, env: dict, cwd: str) -> Submitted:
    """sbatch --test-only on a throw-away copy of the script: no bundle, nothing queued.
    Dependencies on other jobs of a pipeline are left out, since those jobs do not exist."""
    with tempfile.TemporaryDirectory(prefix="hpcctl-test-only-") as tmp:
        path = os.path.join(tmp, "job.sh")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(script)
        sub = backend.submit(path, [], env=env, cwd=cwd, test_only=True)
    return Submitted(job, "", None, "", sub.argv, sub.message)


def submit_file(jobs: JobFile, site: SiteConfig, backend: CommandBackend, keep_sbatch_env: bool = False,
                test_only: bool = False) -> list[Submitted]:
    check_job_file(jobs, site)
    scripts = {job.name: render_job(job, site) for job in jobs.jobs}
    env, ignored = sbatch_environment(keep_sbatch_env)
    digests = image_digests(jobs, site) if not test_only else {}
    cwd = os.getcwd()
    if not test_only:
        for job in jobs.jobs:  # all of them before the first job is queued
            make_output_dirs(job, cwd)
    ids: dict[str, str] = {}
    done: list[Submitted] = []
    for job in jobs.jobs:
        if test_only:
            done.append(_test_only(job, scripts[job.name], backend, env, cwd))
            continue
        dep_args, resolved = dependency_args(job, ids)
        record = bundles.RunRecord(
            job_name=job.name, spec_file=os.path.abspath(jobs.path), site=site.path, cluster=site.cluster,
            hpcctl_version=__version__, workdir=cwd, output=job.output_pattern, image=job.image,
            image_digest=digests.get(job.image or ""), dependencies=resolved, ignored_env=ignored)
        bundle = bundles.create(job.name, jobs.text, site.raw, scripts[job.name], record)
        try:
            sub = backend.submit(str(bundle.script), dep_args, env=env, cwd=cwd)
        except HpcctlError as exc:
            shutil.rmtree(bundle.path)
            if done:
                exc.problem += f" (job '{job.name}'; already submitted: " + \
                    ", ".join(f"{s.job.name}={s.job_id}" for s in done) + ")"
            raise
        record.job_id, record.slurm_cluster, record.argv = sub.job_id, sub.cluster, list(sub.argv)
        record.backend = backend.name
        record.submitted_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        bundle.save(record)
        ids[job.name] = sub.job_id
        done.append(Submitted(job, sub.job_id, sub.cluster, str(bundle.path), sub.argv, sub.message))
    return done
