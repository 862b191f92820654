"""Test images for host MPI injection, built from trees this code makes and pushed like the other test images.

- hpcctl/openmpi:bookworm: `debootstrap --variant=minbase --include=libopenmpi3` (Debian's Open MPI 4.1, the same
  ABI as the sandbox host's) plus /usr/local/bin/mpi-hello compiled with the host's mpicc.
- hpcctl/mpich-abi:latest: busybox with a libmpi.so.12 (the MPICH ABI) that the host's Open MPI must refuse.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hpcctl.sandbox.daemons import StepFailed
from hpcctl.sandbox.oci_push import DOCKER_MANIFEST, OCI_MANIFEST, Pusher, build_layer, image_config
from hpcctl.sandbox.test_images import LAYER_DIR, PATH_ENV, ROOTFS_DIR, busybox_layers, debootstrap_tree

OPENMPI = ("hpcctl/openmpi", "bookworm")
MPICH_ABI = ("hpcctl/mpich-abi", "latest")
LIBDIR = "usr/lib/x86_64-linux-gnu"

HELLO_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int rank, size, len;
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    Dl_info info;
    const char *node = getenv("SLURMD_NODENAME");

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_library_version(version, &len);
    if (!dladdr((void *)MPI_Init, &info))
        info.dli_fname = "?";
    int sum = 0;
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("hello from rank %d of %d on %s, sum of ranks %d, libmpi %s, %.*s\n", rank, size, node ? node : "?",
           sum, info.dli_fname, 16, version);
    MPI_Finalize();
    return 0;
}
"""


def openmpi_tree(log: Path) -> Path:
    return debootstrap_tree("debian-openmpi", log, "libopenmpi3", "test image openmpi")


def hello_tree(log: Path) -> Path:
    """A layer holding /usr/local/bin/mpi-hello, built with the host's mpicc (Open MPI 4.1, libmpi.so.40)."""
    root = ROOTFS_DIR / "mpi-hello"
    binary = root / "usr/local/bin/mpi-hello"
    if binary.exists():
        return root
    binary.parent.mkdir(parents=True, exist_ok=True)
    src = ROOTFS_DIR / "mpi-hello.c"
    src.write_text(HELLO_C)
    with open(log, "a") as out:
        rc = subprocess.run(["mpicc", "-O2", "-o", str(binary), str(src)], stdout=out, stderr=subprocess.STDOUT,
                            check=False).returncode
    if rc:
        raise StepFailed("test image openmpi", f"mpicc exited with status {rc}", log)
    return root


def fake_mpich_tree(log: Path) -> Path:
    """A layer with a libmpi.so.12.1.1 (soname libmpi.so.12), the MPICH ABI, and its links."""
    root = ROOTFS_DIR / "fake-mpich"
    lib = root / LIBDIR / "libmpi.so.12.1.1"
    if lib.exists():
        return root
    lib.parent.mkdir(parents=True, exist_ok=True)
    src = ROOTFS_DIR / "fake-mpich.c"
    src.write_text("int MPI_Init(int *argc, char ***argv) { return 0; }\n")
    with open(log, "a") as out:
        rc = subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libmpi.so.12", "-o", str(lib), str(src)],
                            stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc:
        raise StepFailed("test image mpich-abi", f"gcc exited with status {rc}", log)
    for link in ("libmpi.so.12", "libmpi.so"):
        (lib.parent / link).symlink_to(lib.name)
    return root


def push_openmpi(pusher: Pusher, log: Path) -> bool:
    repo, tag = OPENMPI
    if pusher.has_manifest(repo, tag, DOCKER_MANIFEST):
        return False
    root = openmpi_tree(log)
    layers = [
        build_layer(root, LAYER_DIR / "openmpi-libs.tar.gz", [f"./{LIBDIR}"]),
        build_layer(root, LAYER_DIR / "openmpi-rest.tar.gz", ["."], excludes=[f"./{LIBDIR}", "./.complete"]),
        build_layer(hello_tree(log), LAYER_DIR / "openmpi-hello.tar.gz", ["./usr"]),
    ]
    config = image_config([PATH_ENV, "LANG=C.UTF-8", "HPCCTL_TEST_IMAGE=openmpi"], ["/bin/bash"])
    pusher.push_image(repo, tag, layers, config, docker_v2=True)
    return True


def push_mpich_abi(pusher: Pusher, log: Path) -> bool:
    repo, tag = MPICH_ABI
    if pusher.has_manifest(repo, tag, OCI_MANIFEST):
        return False
    layers = [*busybox_layers(), build_layer(fake_mpich_tree(log), LAYER_DIR / "fake-mpich.tar.gz", ["./usr"])]
    config = image_config([PATH_ENV, "HPCCTL_TEST_IMAGE=mpich-abi"], ["/bin/sh"])
    pusher.push_image(repo, tag, layers, config)
    return True


def push_mpi_images(pusher: Pusher, log: Path) -> list[str]:
    """Push the MPI test images the registry lacks; returns the references pushed."""
    registry = pusher.base[len("http://"):-len("/v2")]
    pushed = [f"{registry}/{':'.join(OPENMPI)}" if push_openmpi(pusher, log) else "",
              f"{registry}/{':'.join(MPICH_ABI)}" if push_mpich_abi(pusher, log) else ""]
    return [name for name in pushed if name]
