"""Shared by the plugin's integration tests: a tiny squashfs image and srun as the sandbox user."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

MARKER = "hpcctl-test-image"


def build_image(dest: Path) -> Path:
    """busybox-static, /etc/marker, root in /etc/passwd, a setuid-root copy of busybox as /opt/suid/id, and a root-only file."""
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
                         entrypoint: list[str] | None = None) -> str:
    """Push the sandbox's busybox layers under ``repo:tag`` with another config; returns the manifest digest."""
    from hpcctl.sandbox.oci_push import Pusher, build_layer, image_config
    from hpcctl.sandbox.test_images import LAYER_DIR, PATH_ENV, busybox_tree

    root = busybox_tree()
    layers = [build_layer(root, LAYER_DIR / "busybox-bin.tar.gz", ["./bin"]),
              build_layer(root, LAYER_DIR / "busybox-rest.tar.gz", ["."], excludes=["./bin", "./.complete"])]
    return Pusher(registry).push_image(repo, tag, layers, image_config([PATH_ENV, *env], ["/bin/sh"], entrypoint))
