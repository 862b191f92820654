"""Golden renders: every example on the sandbox site and the fixture specs on the two site configs we ship, byte for
byte; every spec fits its site's limits and every render passes shellcheck. After an intended change:
HPCCTL_UPDATE_GOLDEN=1 pytest tests/unit/render, then review the diff of tests/unit/render/golden/."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hpcctl.jobspec.load import load_job_file
from hpcctl.jobspec.site_check import check_job_file
from hpcctl.render.script import render_job
from hpcctl.site.config import load_site

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
SITES = {name: REPO / "site-configs" / f"{name}.yaml" for name in ("sandbox", "gpu-ib-example")}
NEUTRAL = ["container-single", "mpi-host", "mpi-container"]
CASES = ([("sandbox", REPO / "examples" / f"{p.stem}.yaml") for p in sorted((REPO / "examples").glob("*.yaml"))]
         + [(site, HERE / "specs" / f"{name}.yaml") for site in SITES for name in NEUTRAL]
         + [("gpu-ib-example", HERE / "specs" / "gpu-ib-train.yaml")])


def rendered(site_name: str, spec: Path) -> dict[Path, str]:
    """Golden file -> rendered text: SPEC.sh for one job, SPEC.JOB.sh for each job of a pipeline."""
    site = load_site(SITES[site_name])
    jobs = load_job_file(str(spec))
    check_job_file(jobs, site)
    folder = HERE / "golden" / site_name
    return {folder / (f"{spec.stem}.{job.name}.sh" if jobs.pipeline else f"{spec.stem}.sh"): render_job(job, site)
            for job in jobs.jobs}


@pytest.mark.parametrize("site_name,spec", CASES, ids=[f"{s}-{p.stem}" for s, p in CASES])
def test_render_matches_golden(site_name, spec):
    for path, text in rendered(site_name, spec).items():
        if os.environ.get("HPCCTL_UPDATE_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden file {path}; create it with HPCCTL_UPDATE_GOLDEN=1"
        assert text == path.read_text(), f"{spec.name} on {site_name}: render differs from {path}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_every_golden_passes_shellcheck():
    files = sorted(str(p) for p in (HERE / "golden").rglob("*.sh"))
    assert len(files) >= len(CASES)
    result = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
