"""The sandbox's test images, made from rootfs trees this code builds, and pushed to the sandbox registries.

- hpcctl/busybox:latest: busybox-static and a few files, two layers, OCI manifest.
- hpcctl/debian:bookworm: `debootstrap --variant=minbase` (about 200 MB), four layers with a whiteout, Docker v2.
- hpcctl/python:bookworm: the same with `--include=python3-pip`, two layers (pip installs into the image are tested).
- private/busybox:latest on the password-protected registry.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from hpcctl.sandbox import layout as L
from hpcctl.sandbox.daemons import StepFailed
from hpcctl.sandbox.oci_push import DOCKER_MANIFEST, OCI_MANIFEST, Pusher, build_layer, image_config

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ROOTFS_DIR = L.BUILD_CACHE / "rootfs"
LAYER_DIR = L.BUILD_CACHE / "layers"

BUSYBOX = ("hpcctl/busybox", "latest")
DEBIAN = ("hpcctl/debian", "bookworm")
PYTHON = ("hpcctl/python", "bookworm")  # Debian with python3-pip
PRIVATE = ("private/busybox", "latest")


def debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", sources.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def busybox_tree() -> Path:
    root = ROOTFS_DIR / "busybox"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "home", "root", "run", "var/tmp", "usr/bin", "usr/sbin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc/os-release").write_text('NAME="hpcctl busybox test image"\nID=busybox\n')
    (root / "tmp").chmod(0o1777)
    (root / ".complete").touch()
    return root


def debootstrap_tree(name: str, log: Path, include: str = "", step: str = "test image debian") -> Path:
    """ROOTFS_DIR/``name``: `debootstrap --variant=minbase bookworm` (plus ``include``, comma-separated packages),
    made once; the downloaded .debs are dropped. ``step``: how a failure is reported."""
    root = ROOTFS_DIR / name
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    extra = [f"--include={include}"] if include else []
    with open(log, "a") as out:
        rc = subprocess.run(["debootstrap", "--variant=minbase", *extra, "bookworm", str(root), debian_mirror()],
                            stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc:
        raise StepFailed(step, f"debootstrap exited with status {rc}", log)
    for item in (root / "var/cache/apt/archives").glob("*.deb"):
        item.unlink()
    (root / ".complete").touch()
    return root


def debian_tree(log: Path) -> Path:
    return debootstrap_tree("debian-bookworm", log)


def python_tree(log: Path) -> Path:
    """Debian with Python and pip, as images of Python users are (`pip install` into the image is tested on it)."""
    return debootstrap_tree("debian-python", log, "python3-pip", "test image python")


def push_python(pusher: Pusher, log: Path) -> bool:
    repo, tag = PYTHON
    if pusher.has_manifest(repo, tag, DOCKER_MANIFEST):
        return False
    root = python_tree(log)
    layers = [build_layer(root, LAYER_DIR / "python-usr.tar.gz", ["./usr"]),
              build_layer(root, LAYER_DIR / "python-rest.tar.gz", ["."], excludes=["./usr", "./.complete"])]
    config = image_config([PATH_ENV, "LANG=C.UTF-8", "HPCCTL_TEST_IMAGE=python"], ["/bin/bash"])
    pusher.push_image(repo, tag, layers, config, docker_v2=True)
    return True


def _marker_tree() -> Path:
    """A top layer that adds a file and deletes one of the lower layers' files (a whiteout)."""
    root = ROOTFS_DIR / "debian-top"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/hpcctl-test-image").write_text("hpcctl sandbox debian test image\n")
    (root / "etc/.wh.motd").touch()
    return root


def busybox_layers() -> list:
    """The busybox tree as two layers: /bin, then the rest. Other test images build on them."""
    root = busybox_tree()
    return [build_layer(root, LAYER_DIR / "busybox-bin.tar.gz", ["./bin"]),
            build_layer(root, LAYER_DIR / "busybox-rest.tar.gz", ["."], excludes=["./bin", "./.complete"])]


def push_busybox(pusher: Pusher, repo: str, tag: str) -> bool:
    if pusher.has_manifest(repo, tag, OCI_MANIFEST):
        return False
    config = image_config([PATH_ENV, "HPCCTL_TEST_IMAGE=busybox"], ["/bin/sh"])
    pusher.push_image(repo, tag, busybox_layers(), config)
    return True


def push_debian(pusher: Pusher, log: Path) -> bool:
    repo, tag = DEBIAN
    if pusher.has_manifest(repo, tag, DOCKER_MANIFEST):
        return False
    root = debian_tree(log)
    libdir = "./usr/lib/x86_64-linux-gnu"
    layers = [
        build_layer(root, LAYER_DIR / "debian-libs.tar.gz", [libdir]),
        build_layer(root, LAYER_DIR / "debian-usr.tar.gz", ["./usr"], excludes=[libdir]),
        build_layer(root, LAYER_DIR / "debian-rest.tar.gz", ["."], excludes=["./usr", "./.complete"]),
        build_layer(_marker_tree(), LAYER_DIR / "debian-top.tar.gz", ["./etc"]),
    ]
    config = image_config([PATH_ENV, "LANG=C.UTF-8", "HPCCTL_TEST_IMAGE=debian"], ["/bin/bash"])
    pusher.push_image(repo, tag, layers, config, docker_v2=True)
    return True


def push_all(log: Path) -> list[str]:
    """Push the test images the registries lack; returns the names pushed."""
    public = Pusher(L.REGISTRY)
    private = Pusher(L.AUTH_REGISTRY, L.AUTH_USER, L.AUTH_PASSWORD)
    pushed = [
        f"{L.REGISTRY}/{':'.join(BUSYBOX)}" if push_busybox(public, *BUSYBOX) else "",
        f"{L.REGISTRY}/{':'.join(DEBIAN)}" if push_debian(public, log) else "",
        f"{L.REGISTRY}/{':'.join(PYTHON)}" if push_python(public, log) else "",
        f"{L.AUTH_REGISTRY}/{':'.join(PRIVATE)}" if push_busybox(private, *PRIVATE) else "",
    ]
    return [name for name in pushed if name]
