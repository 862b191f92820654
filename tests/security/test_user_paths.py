"""Paths the user names are walked with the user's rights, never root's (issue 10: the user's files are hostile)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import NO_MPI, image, srun, work

pytestmark = pytest.mark.integration
__all__ = ["image", "work"]  # module fixtures


@pytest.fixture
def root_only_dir():
    path = Path("/srv") / f"hpcctl-sec-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700, parents=True)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_a_mount_source_behind_a_root_only_directory_reveals_nothing(sandbox, work, image, root_only_dir):
    """Root resolving the link would name its target (under /etc) in the error; the user cannot see it."""
    os.symlink("/etc/ssl", root_only_dir / "hidden")
    r = srun(sandbox, f"--container-image={image}", NO_MPI,
             f"--container-mounts={root_only_dir}/hidden:/x", "true", cwd=work)
    assert r.returncode != 0
    assert "/etc" not in r.stderr and "permission denied" in r.stderr.lower(), r.stderr


def test_an_image_path_swapped_for_a_link_gives_nothing_the_user_cannot_read(sandbox, work, image,
                                                                             root_only_dir):
    """A user's image path that leads (through a link) to a root-only squashfs is opened with the user's rights."""
    secret = root_only_dir / "private.sqsh"
    secret.write_bytes(Path(image).read_bytes())
    root_only_dir.chmod(0o711)
    secret.chmod(0o600)
    link = work / "swapped.sqsh"
    link.symlink_to(secret)
    subprocess.run(["chown", "-h", f"{sandbox.user}:{sandbox.user}", str(link)], check=True)
    r = srun(sandbox, f"--container-image={link}", NO_MPI, "cat", "/etc/marker", cwd=work)
    assert r.returncode != 0 and "hpcctl-test-image" not in r.stdout


@pytest.mark.parametrize("tree", ["/", "/var/lib/hpcctl"])
def test_a_directory_is_no_image(sandbox, work, tree):
    """A directory given as the image would be the host's own tree, its root-owned files shown as the user's."""
    r = srun(sandbox, f"--container-image={tree}", NO_MPI, "cat", "/etc/shadow", cwd=work)
    assert r.returncode != 0 and "is a directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "root:" not in r.stdout


def test_hpcctl_runs_root_tree_keeps_roots_files_roots(sandbox, root_only_dir):
    """An admin's unpacked tree under hpcctl run --user is not id-mapped: its root-only files stay root's."""
    tree = root_only_dir / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "etc").mkdir()
    subprocess.run(["cp", "/bin/busybox", str(tree / "bin/sh")], check=True)
    (tree / "etc/secret").write_text("root only\n")
    (tree / "etc/secret").chmod(0o600)
    root_only_dir.chmod(0o755)
    r = sandbox.run([sys.executable, "-m", "hpcctl", "run", "--user", sandbox.user, "--mpi", "none", str(tree), "--",
                     "/bin/sh", "-c", "cat /etc/secret"], check=False, timeout=120, cwd="/")
    assert "root only" not in r.stdout and r.returncode != 0, r.stdout + r.stderr
