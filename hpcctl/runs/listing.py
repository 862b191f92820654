"""`hpcctl list`: recent run bundles with the state Slurm reports now, from one squeue call for their jobs."""

from __future__ import annotations

from hpcctl.runs.bundle import all_bundles
from hpcctl.slurm.commands import CommandBackend


def recent(backend: CommandBackend, last: int) -> list[dict]:
    records = [(b, b.record()) for b in all_bundles()[:last]]
    queue = backend.jobs(sorted({r.job_id for _, r in records if r.job_id}), mine=True)
    rows = []
    for bundle, record in records:
        jobs = [j for j in queue if record.job_id and j.matches(record.job_id)]
        states = sorted({j.state for j in jobs})
        rows.append({"job_id": record.job_id or "", "name": record.job_name,
                     "state": ",".join(states) or "gone", "submitted_at": record.submitted_at,
                     "bundle": str(bundle.path)})
    return rows
