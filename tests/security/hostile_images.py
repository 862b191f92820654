"""Images an attacker would push or pass as a file: busybox plus whatever the test adds, as a squashfs the sandbox
user owns. Built here (root may put anything in a squashfs: FIFOs, links into /proc, libraries with any SONAME)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path


def shared_object(path: Path, soname: str) -> None:
    """A tiny ELF shared library at ``path`` whose DT_SONAME is ``soname`` (any text: the loader never checks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.with_suffix(".c")
    source.write_text("int hostile_symbol(void) { return 42; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(path), str(source)], check=True)
    source.unlink()


def build(dest: Path, name: str, shape: Callable[[Path], None], owner: str = "hpcuser") -> Path:
    """busybox-static with /etc/passwd and /etc/group, then ``shape(tree)``; the squashfs ``dest/name.sqsh``."""
    tree = dest / f"{name}.tree"
    if tree.exists():
        shutil.rmtree(tree)
    for d in ("bin", "etc", "tmp", "lib"):
        (tree / d).mkdir(parents=True)
    shutil.copy2("/bin/busybox", tree / "bin/busybox")
    for applet in ("sh", "cat", "ls", "echo", "true", "id", "grep", "test", "stat", "sleep", "readlink"):
        os.symlink("busybox", tree / "bin" / applet)
    (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "etc/group").write_text("root:x:0:\n")
    os.chmod(tree / "tmp", 0o1777)
    shape(tree)
    image = dest / f"{name}.sqsh"
    subprocess.run(["mksquashfs", str(tree), str(image), "-noappend", "-quiet", "-all-root"], check=True,
                   capture_output=True)
    shutil.rmtree(tree)
    shutil.chown(image, owner, owner)
    os.chmod(image, 0o644)
    return image
