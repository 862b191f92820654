"""Shared by the plugin's integration tests: a tiny squashfs image, srun as the sandbox user, registry images with
their own config, and the module fixtures the test files import (``work``, ``image``, ``entrypoint_image``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

MARKER = "hpcctl-test-image"
NO_MPI = "--container-mpi=none"  # the tests' images have no MPI to check against the host's


@pytest.fixture(scope="module")
def work(sandbox):
    return sandbox.workdir()


@pytest.fixture(scope="module")
def image(work):
    return str(build_image(work))


@pytest.fixture(scope="module")
def entrypoint_image(sandbox):
    """busybox whose entrypoint prints a line and exports ENTRYPOINT_RAN=yes, then runs the command (in the plugin,
    as in pyxis, the command sees the export; the line shows only with --container-entrypoint-log)."""
    repo = "hpcctl/plugin-entrypoint"
    push_busybox_variant(sandbox.registry, repo, "v2", [],
                         entrypoint=["/bin/sh", "-c", 'echo entrypoint-ran; export ENTRYPOINT_RAN=yes; exec "$@"',
                                     "entrypoint"])
    return f"{sandbox.registry}/{repo}:v2"


def build_image(dest: Path) -> Path:
    """busybox-static, /etc/marker, root in /etc/passwd, a setuid-root copy of busybox as /opt/suid/id, and a
    root-only file."""
    tree = dest / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    for d in ("bin", "etc", "tmp", "opt/suid", "secret"):
        (tree / d).mkdir(parents=True)
    shutil.copy2("/bin/busybox", tree / "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", tree / "bin" / applet)
    (tree / "etc/marker").write_text(MARKER + "\n")
    (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")  # as in any real image (Slurm's commands
    (tree / "etc/group").write_text("root:x:0:\n")  # look up SlurmUser=root)
    shutil.copy2("/bin/busybox", tree / "opt/suid/id")
    os.chmod(tree / "opt/suid/id", 0o4755)
    os.chmod(tree / "tmp", 0o1777)
    image = dest / "test.sqsh"
    subprocess.run(["mksquashfs", str(tree), str(image), "-noappend", "-quiet", "-all-root"], check=True,
                   capture_output=True)
    os.chmod(image, 0o644)
    shutil.rmtree(tree)
    return image


def srun(sandbox, *args: str, cwd=None, env=None, timeout: float = 120):
    return sandbox.run(["srun", *args], user=sandbox.user, check=False, cwd=cwd, env=env, timeout=timeout)


def push_busybox_variant(registry: str, repo: str, tag: str, env: list[str],
                         entrypoint: list[str] | None = None, workdir: str = "/") -> str:
    """Push the sandbox's busybox layers under ``repo:tag`` with another config; returns the manifest digest."""
    from hpcctl.sandbox.oci_push import Pusher, build_layer, image_config
    from hpcctl.sandbox.test_images import LAYER_DIR, PATH_ENV, busybox_tree

    root = busybox_tree()
    layers = [build_layer(root, LAYER_DIR / "busybox-bin.tar.gz", ["./bin"]),
              build_layer(root, LAYER_DIR / "busybox-rest.tar.gz", ["."], excludes=["./bin", "./.complete"])]
    return Pusher(registry).push_image(repo, tag, layers, image_config([PATH_ENV, *env], ["/bin/sh"], entrypoint,
                                                                        workdir))


def job_across_a_retag(sandbox, work: Path, repo: str, script: str, *sbatch_args: str) -> tuple[str, str]:
    """Push ``repo``:latest with PIN_VERSION=1 and submit ``script``, which prints one line and then waits for the
    file ``{retagged}``; once that line is out, move the tag to PIN_VERSION=2, let the job go on, wait for its end.
    Returns the job's state and output."""
    push_busybox_variant(sandbox.registry, repo, "latest", ["PIN_VERSION=1"])
    flag = work / f"{repo.split('/')[-1]}.retagged"
    path = work / f"{repo.split('/')[-1]}.sh"
    path.write_text(script.format(retagged=flag))
    sandbox.run(["chown", f"{sandbox.user}:{sandbox.user}", str(path)])
    submitted = sandbox.run(["sbatch", "--parsable", f"--output={work}/%j.out", *sbatch_args, str(path)],
                            user=sandbox.user, cwd=work)
    job_id = submitted.stdout.strip().split(";")[0]
    out = work / f"{job_id}.out"
    deadline = time.monotonic() + 60
    while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    push_busybox_variant(sandbox.registry, repo, "latest", ["PIN_VERSION=2"])
    flag.touch()
    state, _ = sandbox.wait(job_id)
    return state, out.read_text()
