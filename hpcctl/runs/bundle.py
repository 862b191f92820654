"""Run bundles: everything needed to see what was submitted and to submit it again.

One directory per submitted job under $XDG_DATA_HOME/hpcctl/runs (default ~/.local/share/hpcctl/runs):
spec.yaml (the spec file as written), site.yaml (the resolved site config), job.sh (the rendered script, the
file sbatch got) and run.json (job id, cluster, exact submission command, working directory, hpcctl version,
image and its digest when known).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from hpcctl.errors import HpcctlError


def runs_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "hpcctl" / "runs"


@dataclass
class RunRecord:
    job_name: str
    spec_file: str
    site: str
    cluster: str
    hpcctl_version: str
    workdir: str
    output: str  # the --output pattern, relative to workdir unless absolute
    image: str | None = None
    image_digest: str | None = None
    argv: list[str] = field(default_factory=list)
    job_id: str | None = None
    slurm_cluster: str | None = None  # from JOBID;CLUSTER
    backend: str = ""
    submitted_at: str = ""
    dependencies: dict = field(default_factory=dict)  # kind -> resolved job ids
    ignored_env: dict = field(default_factory=dict)  # SBATCH_* variables kept away from sbatch


@dataclass(frozen=True)
class Bundle:
    path: Path

    @property
    def script(self) -> Path:
        return self.path / "job.sh"

    def record(self) -> RunRecord:
        try:
            raw = json.loads((self.path / "run.json").read_text())
        except (OSError, ValueError) as exc:
            raise HpcctlError(f"{self.path}: not a run bundle ({exc})", "pass a job id or a directory "
                              f"under {runs_dir()}") from None
        return RunRecord(**{k: v for k, v in raw.items() if k in RunRecord.__dataclass_fields__})

    def save(self, record: RunRecord) -> None:
        tmp = self.path / "run.json.tmp"
        tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
        tmp.replace(self.path / "run.json")


def create(job_name: str, spec_text: str, site_raw: dict, script: str, record: RunRecord) -> Bundle:
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9)) + f".{now // 1000 % 10**6:06d}Z"  # sorts by time
    path = runs_dir() / f"{stamp}-{job_name}-{secrets.token_hex(2)}"
    path.mkdir(parents=True)
    (path / "spec.yaml").write_text(spec_text)
    (path / "site.yaml").write_text(yaml.safe_dump(site_raw, sort_keys=False))
    (path / "job.sh").write_text(script)
    bundle = Bundle(path)
    bundle.save(record)
    return bundle


def all_bundles() -> list[Bundle]:
    """Newest first."""
    root = runs_dir()
    if not root.is_dir():
        return []
    return [Bundle(p) for p in sorted(root.iterdir(), reverse=True) if (p / "run.json").is_file()]


def find(ref: str) -> Bundle | None:
    """A bundle by path, by directory name, or by the job id it recorded (array tasks: 123_4 finds 123)."""
    as_path = Path(ref).expanduser()
    if (as_path / "run.json").is_file():
        return Bundle(as_path)
    if (runs_dir() / ref / "run.json").is_file():
        return Bundle(runs_dir() / ref)
    job = ref.split("_", 1)[0]
    return next((b for b in all_bundles() if b.record().job_id == job), None)
