"""Paths a user can plant or swap before root uses them (findings of the threat-model audit, docs/security.md)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import NO_MPI, image, srun, work
from tests.security.hostile_images import build
from tests.security.test_image_content import settled

pytestmark = pytest.mark.integration
__all__ = ["image", "work"]  # module fixtures


@pytest.fixture
def secret_dir():
    """A world-readable directory with a marker file, behind a root-only parent (as the cache's blobs/sha256)."""
    parent = Path("/srv") / f"hpcctl-secret-{uuid.uuid4().hex[:8]}"
    parent.mkdir(mode=0o700, parents=True)
    inner = parent / "inner"
    inner.mkdir(mode=0o755)
    (inner / "root-only-marker").write_text("secret\n")
    yield inner
    subprocess.run(["rm", "-rf", str(parent)], check=False)


def test_a_planted_pmix_app_directory_link_binds_nothing_of_roots(sandbox, work, image, secret_dir):
    """The PMIx application directory lives in the world-writable TmpFS: a link planted under its name before the
    step starts must not make root bind what it points to."""
    uid = subprocess.run(["id", "-u", sandbox.user], capture_output=True, text=True).stdout.strip()
    job = sandbox.sbatch(
        "#!/bin/bash\n"
        f"app=/tmp/slurmtmp_n1/spmix_appdir_{uid}_${{SLURM_JOB_ID}}.0\n"
        f"ln -s {secret_dir} $app\n"
        f"srun -w n1 -n1 --container-image={image} ls $app/\n"
        "rm -f $app\n", "-w", "n1")
    assert "root-only-marker" not in job.output, job.output


def test_a_mount_of_a_parent_of_a_denied_path_is_refused(sandbox, work, image):
    for source in ("/", "/var", "/run"):
        r = srun(sandbox, f"--container-image={image}", NO_MPI, f"--container-mounts={source}:/host", "true",
                 cwd=work)
        assert r.returncode != 0 and "does not let users mount" in r.stderr, (source, r.stderr)


def test_an_image_whose_linker_cache_is_a_fifo_does_not_block_root(sandbox, work):
    img = build(work, "ldcache-fifo", lambda tree: os.mkfifo(tree / "etc/ld.so.cache"))
    started = time.monotonic()
    r = srun(sandbox, f"--container-image={img}", "id", "-un", cwd=work, timeout=150)
    assert time.monotonic() - started < 100
    assert r.returncode == 0 and r.stdout.strip() == sandbox.user, r.stderr
    assert settled(img) == []


def test_an_image_path_that_is_a_fifo_does_not_block_root(sandbox, work):
    fifo = work / "fifo.sqsh"
    os.mkfifo(fifo)
    subprocess.run(["chown", f"{sandbox.user}:{sandbox.user}", str(fifo)], check=True)
    started = time.monotonic()
    r = srun(sandbox, f"--container-image={fifo}", NO_MPI, "true", cwd=work, timeout=150)
    assert time.monotonic() - started < 60
    errors = [line for line in r.stderr.splitlines() if line.startswith("hpcctl: error:")]
    assert r.returncode != 0 and len(errors) == 1 and "not a regular file" in errors[0], r.stderr


def test_a_user_bind_is_always_recursive(sandbox, work, image):
    """A non-recursive clone by root would show what the host's submounts cover (here: the tmpfs under /run)."""
    r = srun(sandbox, f"--container-image={image}", NO_MPI, f"--container-mounts={work}:/w:bind", "sh", "-c",
             "grep -c ' /w' /proc/self/mountinfo", cwd=work)
    assert r.returncode == 0, r.stderr
    plain = srun(sandbox, f"--container-image={image}", NO_MPI, f"--container-mounts={work}:/w", "sh", "-c",
                 "grep -c ' /w' /proc/self/mountinfo", cwd=work)
    assert r.stdout == plain.stdout
