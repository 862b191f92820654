"""Prefetch at job start (issue 14): the plugin's job prolog (PrologFlags=Alloc: root, on every allocated node, at
allocation) starts fetching the image the job was pinned to at submission and returns at once, so a step finds it
ready, on nodes where no step has run yet too."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shared_store_helpers import point_plugin_at, push_cold, shared_entry

from hpcctl.sandbox import layout as L

pytestmark = pytest.mark.integration


def test_every_allocated_node_fetches_the_pinned_image_before_any_step_asks(sandbox):
    ref, _ = push_cold(sandbox.registry, "hpcctl/prefetch-cold", payload_mb=2)
    resolved = subprocess.run([sys.executable, "-m", "hpcctl", "image", "resolve", "--json", ref],
                              capture_output=True, text=True, check=True)
    key = json.loads(resolved.stdout)["digest"].split(":", 1)[1]
    n2 = Path("/var/lib/hpcctl/nodes/n2/cache/images") / f"{key}.json"
    job = sandbox.run(["sbatch", "--parsable", "-N", "2", "-w", "n1,n2", f"--container-image={ref}",
                       "--container-mpi=none", "--wrap", "sleep 30"], user=sandbox.user,
                      cwd=sandbox.workdir()).stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 90
        while not n2.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert n2.exists(), f"node n2 never fetched {ref}: {sandbox.job_state(job)}"
        assert sandbox.job_state(job)[0] == "RUNNING"  # the prolog returned at once; only the batch step, on n1
        pulled = json.loads(n2.read_text())
        assert pulled["pulled_by_uid"] == 2001  # with the job user's credentials, not root's
    finally:
        sandbox.run(["scancel", job], check=False)


def test_a_first_step_racing_the_prefetch_through_the_shared_store_joins_it(sandbox):
    """mount mode: the prolog's prefetch and the batch script's first srun ask for the cold image at once on both
    nodes; every task gets it, converted once (regression: a step took the converting node's own copy, which went
    away once the store had it)."""
    from hpcctl.sandbox import up, users
    users.ensure_store_account()
    up._shared_site_config()
    try:
        for _ in range(2):
            ref, _ = push_cold(sandbox.registry, "hpcctl/prefetch-cold", payload_mb=16)
            work = sandbox.workdir()
            point_plugin_at(L.SHARED_SITE_FILE)
            job = sandbox.run(["sbatch", "--parsable", "-N", "2", "-w", "n1,n2", "-o", str(work / "out"),
                               "--wrap", f"srun -N2 --container-mpi=none --container-image={ref} cat /payload/tag"],
                              user=sandbox.user, cwd=work).stdout.strip().split(";")[0]
            assert sandbox.wait(job, timeout=300)[0] == "COMPLETED", (work / "out").read_text()
            assert (work / "out").read_text().split() == [ref.rsplit(":", 1)[1]] * 2
            digest = json.loads(subprocess.run([sys.executable, "-m", "hpcctl", "image", "resolve", "--json", ref],
                                               capture_output=True, text=True, check=True).stdout)["digest"]
            assert shared_entry(digest) is not None
    finally:
        point_plugin_at(L.SITE_FILE)
