#!/usr/bin/env python3
"""Cost of one job query poll (`hpcctl status`, `submit --wait`, `logs -f`, `list`): old way vs new way.

    python bench/bench_queries.py [--jobs 40] [--rounds 20] [--json out.json]

Queues JOBS held jobs spread over the sandbox's users (root, hpcuser, hpcother), then times each way of asking
Slurm ROUNDS times and prints the median wall time and the bytes Slurm printed per poll:
- old: `squeue --json` (22.05 ignores its filters: every job of every user slurmctld remembers) + json.loads;
- new: `squeue --noheader --states=all --Format=... --jobs=ID` for one job (slurmctld sends that job alone), and
  `--jobs=ID,ID,... --me` for a user's own jobs (`submit --wait` of a pipeline, `list`).
The held jobs are cancelled at the end. Needs root and a running sandbox (`hpcctl sandbox up`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcctl.sandbox import layout as L  # noqa: E402
from hpcctl.sandbox.users import ensure_test_users  # noqa: E402
from hpcctl.slurm.jobs import SQUEUE_FORMAT, split_squeue  # noqa: E402

USERS = ("root", L.TEST_USER, L.OTHER_USER)


def queue_held_jobs(count: int) -> dict[str, list[str]]:
    """``count`` held jobs, round robin over USERS: their ids by user."""
    ids: dict[str, list[str]] = {user: [] for user in USERS}
    for n in range(count):
        user = USERS[n % len(USERS)]
        out = subprocess.run(["runuser", "-u", user, "--", "sbatch", "--parsable", "--hold", f"--job-name=q{n}",
                              "--output=/dev/null", "--wrap=true"], capture_output=True, text=True, check=True,
                             cwd="/tmp").stdout
        ids[user].append(out.strip().split(";")[0])
    return ids


def timed(argv: list[str], user: str, parse) -> tuple[float, int, int]:
    """(wall s of the command and the parsing of its output, bytes it printed, records parsed)."""
    start = time.perf_counter()
    out = subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, check=True).stdout
    records = parse(out.decode("utf-8", "surrogateescape"))
    return time.perf_counter() - start, len(out), records


def old_way(out: str) -> int:
    """(decoded tolerantly here: the old code's strict decoding failed on a byte that is not UTF-8)"""
    return len(json.loads(out).get("jobs", []))


def new_way(out: str) -> int:
    return len(split_squeue(out))


def measure(name: str, argv: list[str], user: str, parse, rounds: int) -> dict:
    runs = [timed(argv, user, parse) for _ in range(rounds)]
    return {"query": name, "median_ms": round(1000 * statistics.median(r[0] for r in runs), 1),
            "bytes": runs[-1][1], "records": runs[-1][2]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40, help="held jobs to queue over the users (default 40)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    ensure_test_users()
    ids = queue_held_jobs(args.jobs)
    try:
        known = old_way(subprocess.run(["squeue", "--json"], capture_output=True, check=True).stdout.decode(
            "utf-8", "surrogateescape"))
        mine = ids[L.TEST_USER]
        new = ["squeue", "--noheader", "--states=all", f"--Format={SQUEUE_FORMAT}"]
        results = [
            measure("old: squeue --json (every job)", ["squeue", "--json"], L.TEST_USER, old_way, args.rounds),
            measure("new: one job (status, logs -f, --wait)", [*new, f"--jobs={mine[0]}"], L.TEST_USER, new_way,
                    args.rounds),
            measure(f"new: {len(mine[:5])} own jobs (--wait of a pipeline)", [*new, "--jobs=" + ",".join(mine[:5]),
                                                                             "--me"], L.TEST_USER, new_way,
                    args.rounds),
            measure(f"new: {len(mine)} own jobs (list)", [*new, "--jobs=" + ",".join(mine), "--me"], L.TEST_USER,
                    new_way, args.rounds),
        ]
    finally:
        subprocess.run(["scancel", *[i for user_ids in ids.values() for i in user_ids]], check=False)
    print(f"{args.jobs} held jobs of {len(USERS)} users queued; slurmctld knows {known} jobs (finished ones until "
          f"MinJobAge); {args.rounds} rounds as {L.TEST_USER}")
    for r in results:
        print(f"  {r['query']:<44} median {r['median_ms']:7.1f} ms  {r['bytes']:>9} bytes  {r['records']:>4} jobs")
    if args.json:
        Path(args.json).write_text(json.dumps({"jobs_queued": args.jobs, "jobs_known": known, "results": results},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
