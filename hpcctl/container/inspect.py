"""`hpcctl image inspect`: what an image is and what it runs, for a .sif, a squashfs file or a cached image.

The file's own bytes (a .sif's header, the digest) are read with the caller's rights; what lies inside the image
(Singularity's env scripts, runscript and labels, the architecture of its /bin/sh) is read through the project's
confined image view (hpcctl.container.image_view), as the caller, bounded like every other read of image content.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import threading
from dataclasses import asdict, dataclass, field

from hpcctl.container import image_view
from hpcctl.container.access import Identity
from hpcctl.container.inject.container_libs import resolve_in_root
from hpcctl.container.singularity import ENV_DIR, LABELS, RUNSCRIPT
from hpcctl.errors import HpcctlError
from hpcctl.host.files import read_regular
from hpcctl.image import sif

TEXT_BYTES = 64 << 10  # a runscript, env script or labels file beyond this is cut
MAX_ENV_SCRIPTS = 64
UNSQUASHFS_S = 30
_ELF_MACHINES = {3: "386", 0x3E: "amd64", 0x28: "arm", 0xB7: "arm64", 0x16: "s390x", 0xF3: "riscv64"}


@dataclass
class Inspection:
    format: str  # sif | squashfs | oci
    reference: str
    path: str
    size: int  # bytes of the file (or the cached squashfs)
    digest: str
    architecture: str
    env: list[str] = field(default_factory=list)  # OCI Env (K=V)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env_scripts: list[dict] = field(default_factory=list)  # a .sif's /.singularity.d/env/*.sh, in sourcing order
    runscript: str = ""
    labels: dict = field(default_factory=dict)
    sif: dict = field(default_factory=dict)  # header, partition, descriptors, refusal

    def to_dict(self) -> dict:
        return asdict(self)


def _text(rootfs: str, path: str) -> str:
    return read_regular(f"{rootfs}/{resolve_in_root(rootfs, path).lstrip('/')}", TEXT_BYTES).decode(
        errors="replace")


def _arch(rootfs: str) -> str:
    return _elf_arch(read_regular(f"{rootfs}/{resolve_in_root(rootfs, '/bin/sh').lstrip('/')}", 20))


def _elf_arch(head: bytes) -> str:
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return "unknown"
    machine = struct.unpack_from("<H" if head[5] == 1 else ">H", head, 18)[0]
    if machine == 0x15:
        return "ppc64le" if head[5] == 1 else "ppc64"
    return _ELF_MACHINES.get(machine, f"ELF machine {machine}")


def collect(rootfs: str) -> dict:
    """Inside the image (``rootfs``, the confined child's view): Singularity's metadata and /bin/sh's machine."""
    env_dir = f"{rootfs}/{resolve_in_root(rootfs, ENV_DIR).lstrip('/')}"
    try:
        names = sorted(n for n in os.listdir(env_dir) if n.endswith(".sh"))[:MAX_ENV_SCRIPTS]
    except OSError:
        names = []
    try:
        labels = json.loads(_text(rootfs, LABELS) or "{}")
    except ValueError:
        labels = {}
    return {"arch": _arch(rootfs), "runscript": _text(rootfs, RUNSCRIPT), "labels": labels
            if isinstance(labels, dict) else {}, "env_scripts": [{"name": n, "text": _text(rootfs, f"{ENV_DIR}/{n}")}
                                                                  for n in names]}


def _inside(path: str, who: Identity, scratch: str, user_file: bool, offset: int = 0, size: int = 0) -> dict:
    if os.geteuid() != 0:  # no mount needed (nor squashfuse, which a login node may not allow users)
        return _unprivileged(path, offset)
    return image_view.read(path, who, lambda: collect("."), f"the image {path}", scratch, user_file=user_file,
                           offset=offset, size=size)


def _unsquashfs(path: str, offset: int, *args: str, limit: int = TEXT_BYTES) -> bytes:
    """The first ``limit`` bytes unsquashfs prints for ``args``, run as the caller, stopped after UNSQUASHFS_S."""
    try:
        process = subprocess.Popen(["unsquashfs", "-o", str(offset), *args[:1], path, *args[1:]],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise HpcctlError("cannot read inside the image: unsquashfs is not installed",
                          "install squashfs-tools, or run as root") from None
    timer = threading.Timer(UNSQUASHFS_S, process.kill)
    timer.start()
    try:
        return process.stdout.read(limit)
    finally:
        timer.cancel()
        process.kill()
        process.wait()
        process.stdout.close()


def _unprivileged(path: str, offset: int) -> dict:
    """collect()'s answer, read with unsquashfs (-cat and -lc of the few paths it needs)."""
    def cat(member: str) -> str:
        return _unsquashfs(path, offset, "-cat", member).decode(errors="replace")

    listing = _unsquashfs(path, offset, "-lc", ENV_DIR.lstrip("/")).decode(errors="replace").splitlines()
    names = sorted(line.rsplit("/", 1)[-1] for line in listing if line.endswith(".sh"))[:MAX_ENV_SCRIPTS]
    try:
        labels = json.loads(cat(LABELS.lstrip("/")) or "{}")
    except ValueError:
        labels = {}
    shell = "bin/sh"
    for _ in range(8):  # /bin/sh is usually a link (to dash, busybox ...): -cat does not follow it
        link = _unsquashfs(path, offset, "-lls", shell, limit=4096).decode(errors="replace").splitlines()
        target = link[-1].split(" -> ", 1)[1] if link and " -> " in link[-1] else None
        if target is None:
            break
        shell = os.path.normpath(os.path.join(os.path.dirname(shell), target)).lstrip("/")
    return {"arch": _elf_arch(_unsquashfs(path, offset, "-cat", shell, limit=20)), "runscript":
            cat(RUNSCRIPT.lstrip("/")), "labels": labels if isinstance(labels, dict) else {},
            "env_scripts": [{"name": n, "text": cat(f"{ENV_DIR.lstrip('/')}/{n}")} for n in names]}


def _file_digest(fd: int) -> str:
    digest, offset = hashlib.sha256(), 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
    return "sha256:" + digest.hexdigest()


def _sif_facts(parsed: sif.SifFile) -> tuple[dict, sif.Partition | None]:
    try:
        part, refusal = parsed.system_partition, ""
    except sif.BadSif as exc:
        part, refusal = None, str(exc)
    signatures = sum(1 for d in parsed.descriptors if d.data_type == sif.DATA_SIGNATURE)
    return {"id": parsed.id, "created": parsed.created, "version": parsed.version, "header_arch": parsed.arch,
            "signatures": signatures, "signatures_verified": False,
            "partition": asdict(part) if part else None, "runnable": not refusal, "refusal": refusal,
            "descriptors": [{"id": d.id, "type": d.summary, "offset": d.offset, "size": d.size, "name": d.name}
                            for d in parsed.descriptors]}, part


def inspect_file(path: str, who: Identity, scratch: str) -> Inspection:
    """A .sif or squashfs file, opened with ``who``'s rights."""
    try:
        fd = image_view.open_image_file(path, who)
    except OSError as exc:
        raise HpcctlError(f"cannot open {path}: {exc.strerror.lower()}",
                          "pass a .sif or squashfs file that you can read") from None
    try:
        size, digest = os.fstat(fd).st_size, _file_digest(fd)
        if os.pread(fd, 4, 0) == sif.SQUASHFS_MAGIC:
            found = Inspection("squashfs", path, path, size, digest, "unknown")
            part = None
        elif os.pread(fd, 9, 32) == sif.MAGIC:
            facts, part = _sif_facts(sif.read(fd))
            arch = (part.arch if part else "") or facts["header_arch"]
            found = Inspection("sif", path, path, size, digest, arch, sif=facts)
            if part is None:
                return found
        else:
            raise HpcctlError(f"{path} is neither a .sif nor a squashfs file",
                              "pass a file built by Apptainer/Singularity or mksquashfs")
    finally:
        os.close(fd)
    inside = _inside(path, who, scratch, True, part.offset if part else 0, part.size if part else 0)
    if found.format == "squashfs":
        found.architecture = inside["arch"]
    else:
        found.runscript, found.labels = inside["runscript"], inside["labels"]
        found.env_scripts = inside["env_scripts"]
    return found


def inspect_cached(image, meta: dict, who: Identity, scratch: str) -> Inspection:
    """A cached image (hpcctl.image.cache.CachedImage and its entry's metadata)."""
    config, facts = image.config, {}
    if image.offset:  # a .sif pulled with oras://, cached as it is
        fd = image_view.open_image_file(image.path, who)
        try:
            facts, _ = _sif_facts(sif.read(fd))
        finally:
            os.close(fd)
    inside = _inside(image.path, who, scratch, False, image.offset, image.size if image.offset else 0)
    found = Inspection("sif" if image.offset else "oci", image.reference, image.path, image.size, image.digest,
                       meta.get("architecture") or inside["arch"], env=list(config.env),
                       entrypoint=list(config.entrypoint) if config.entrypoint is not None else None,
                       cmd=list(config.cmd) if config.cmd is not None else None,
                       labels=dict(config.labels) or inside["labels"], sif=facts)
    found.runscript, found.env_scripts = inside["runscript"], inside["env_scripts"]
    return found
