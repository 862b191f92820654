"""Fake GPU hosts and images for injection tests (unit tests, and `hpcctl run` in integration tests): real shared
objects with the right sonames (built with gcc), a linker cache over them read by a static ldconfig stand-in, a fake
nvidia-smi, device nodes with NVIDIA's major 195."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hpcctl.container.image_facts import ImageFacts, collect
from hpcctl.container.inject.mpi import image_linkers
from hpcctl.container.inject.step import StepInfo
from hpcctl.site.config import load_site

DRIVER = "535.104.05"
OLD_DRIVER = "470.57.02"
LIBDIR = "usr/lib/x86_64-linux-gnu"
NEEDS_GLIBC_2_25 = "#include <sys/random.h>\nint hpcctl_fake(void) { char b[4]; return getrandom(b, 4, 0); }"
SMI = f"""#!/bin/sh
case "$*" in
  *--query-gpu=driver_version*) echo {DRIVER}; echo {DRIVER} ;;
  *) echo "NVIDIA-SMI {DRIVER}   fake GPU table" ;;
esac
"""


def shared_object(path: Path, soname: str, links: tuple[str, ...] = (), code: str = "int hpcctl_fake(void) "
                  "{ return 1; }", flags: tuple[str, ...] = ()) -> Path:
    """A real x86-64 shared object at ``path`` with ``soname``, and symlinks to it as a package would make."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.parent / ".fake.c"
    src.write_text(code + "\n")
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", *flags, "-o", str(path), str(src)],
                   check=True)
    src.unlink()
    for link in {soname, *links} - {path.name}:
        if not os.path.lexists(path.parent / link):
            os.symlink(path.name, path.parent / link)
    return path


@dataclass
class FakeHost:
    root: Path
    ldconfig: Path
    dev: Path

    def lib(self, name: str) -> str:
        return str(self.root / LIBDIR / name)

    def site(self, tmp: Path, extra: str = "", mpi_abi: str = "major", mpi_libraries: str = "[libmpi.so.40]"):
        text = f"""\
version: 1
cluster: fake
slurm:
  spool_dir: {self.root}/spool/%n
  tmpfs: {self.root}/tmpfs_%n
mpi:
  default: openmpi
  flavours:
    openmpi:
      libraries: {mpi_libraries}
      dependencies: [libpmix.so.2]
      abi_check: {mpi_abi}
      binds:
        - source: {self.dev}/infiniband
          why: InfiniBand verbs devices
        - source: {self.root}/absent
          optional: true
      env:
        OMPI_MCA_btl: self,tcp
    mpich:
      libraries: [libmpi.so.12]
gpu:
  driver_libraries: [libcuda.so, libnvidia-ml.so, libnvidia-ptxjitcompiler.so, libnvidia-absent.so]
  binaries: [{self.root}/usr/bin/nvidia-smi]
  control_devices: [{self.dev}/nvidiactl, {self.dev}/nvidia-uvm, {self.dev}/nvidia-modeset]
  device_pattern: {self.dev}/nvidia{{index}}
  ldconfig: {self.ldconfig}
{extra}"""
        path = tmp / "site.yaml"
        path.write_text(text)
        return load_site(path)


LDCONFIG_C = r"""#include <string.h>
#include <unistd.h>
/* The fake host's ldconfig: `-p` lists the fake driver tree's cache, `-C CACHE -p` (an image's cache) is the real
   ldconfig; run inside a container to rebuild its cache it does nothing: the fake libraries are found through
   LD_LIBRARY_PATH. Static, as the runtime executes it inside the container. */
int main(int argc, char **argv)
{
    int print = 0, other_cache = 0;
    for (int i = 1; i < argc; i++) {
        print |= strcmp(argv[i], "-p") == 0;
        other_cache |= strcmp(argv[i], "-C") == 0;
    }
    if (print && other_cache)
        return execv("/sbin/ldconfig", argv), 127;
    if (print)
        return execl("/sbin/ldconfig", "ldconfig", "-C", CACHE, "-p", (char *)0), 127;
    return 0;
}
"""


def static_ldconfig(root: Path, cache: Path) -> Path:
    """A static ldconfig stand-in (see LDCONFIG_C) at ``root``/ldconfig that lists ``cache``."""
    source = root / "ldconfig.c"
    source.write_text(LDCONFIG_C)
    out = root / "ldconfig"
    subprocess.run(["gcc", "-static", "-O1", f'-DCACHE="{cache}"', "-o", str(out), str(source)], check=True)
    source.unlink()
    return out


def mknod(path: Path, major: int, minor: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o666 | 0o020000, os.makedev(major, minor))


def build_fake_host(root: Path) -> FakeHost:
    libs = root / LIBDIR
    shared_object(libs / f"libcuda.so.{DRIVER}", "libcuda.so.1", ("libcuda.so",))
    shared_object(libs / f"libnvidia-ml.so.{DRIVER}", "libnvidia-ml.so.1", ("libnvidia-ml.so",))
    shared_object(root / "old" / f"libnvidia-ptxjitcompiler.so.{OLD_DRIVER}", "libnvidia-ptxjitcompiler.so.1")
    shared_object(libs / "libmpi.so.40.30.4", "libmpi.so.40")
    shared_object(libs / "libpmix.so.2.6.2", "libpmix.so.2")
    shared_object(root / "mpich" / "libmpi.so.12.2.1", "libmpi.so.12")
    shared_object(root / "newer-glibc" / "libmpi.so.40.30.4", "libmpi.so.40", code=NEEDS_GLIBC_2_25)
    (root / "ld.so.conf").write_text(f"{libs}\n{root / 'old'}\n{root / 'mpich'}\n")
    subprocess.run(["/sbin/ldconfig", "-X", "-C", str(root / "ld.so.cache"), "-f", str(root / "ld.so.conf")],
                   check=True)
    ldconfig = static_ldconfig(root, root / "ld.so.cache")
    smi = root / "usr/bin/nvidia-smi"
    smi.parent.mkdir(parents=True)
    smi.write_text(SMI)
    smi.chmod(0o755)
    dev = root / "dev"
    for i in range(4):
        mknod(dev / f"nvidia{i}", 195, i)
    mknod(dev / "nvidiactl", 195, 255)
    mknod(dev / "nvidia-uvm", 511, 0)
    mknod(dev / "infiniband/uverbs0", 231, 192)
    return FakeHost(root, ldconfig, dev)


def image(tmp: Path, libs: dict[str, str], glibc: str | None = None) -> Path:
    """A container root tree whose lib dir holds fake libraries: {file name: soname}; /lib links to usr/lib.
    ``glibc``: also a libc.so.6 whose newest symbol version is GLIBC_<glibc>."""
    root = tmp / "rootfs"
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    if not (root / "lib").exists():
        os.symlink("/usr/lib", root / "lib")
    for name, soname in libs.items():
        shared_object(root / LIBDIR / name, soname, (soname.split(".so")[0] + ".so",))
    if glibc:
        script = tmp / "glibc.map"
        script.write_text(f"GLIBC_2.2.5 {{ global: old_symbol; local: *; }};\n"
                          f"GLIBC_{glibc} {{ global: new_symbol; }} GLIBC_2.2.5;\n")
        shared_object(root / LIBDIR / "libc.so.6", "libc.so.6", code="int old_symbol(void) { return 0; }\n"
                      "int new_symbol(void) { return 0; }", flags=("-nostdlib", f"-Wl,--version-script={script}"))
    return root


def step_info(node: str = "n1", job: str = "42", gpus: tuple[int, ...] = (), mpi: str | None = None,
              **env: str) -> StepInfo:
    """A step of uid/gid 2001 as the plugin hands it to injection (ids from Slurm, GPUs already verified)."""
    return StepInfo(node=node, job_id=job, step_id="0", uid=2001, gid=2001, gpus=gpus, mpi=mpi, env=env)


def facts(site, rootfs: Path, mpi: str | None) -> ImageFacts:
    """What the plugin reads from the image at ``rootfs`` (here without the confined child)."""
    return ImageFacts.from_dict(collect(str(rootfs), image_linkers(site, mpi), site.gpu.ldconfig))
