"""Write SIF files as the public specification (apptainer/sif, pkg/sif) lays them out, for tests: the reader
(hpcctl.image.sif) is checked against the reference implementation's files, and this writer against both.

- ``write(path, objects, ...)``: a global header, a table of ``descriptors`` descriptors at byte 4096, then the
  objects, each at its alignment; a byte-for-byte copy of what `siftool`/`apptainer` write for the same input.
- ``singularity_sif(path, rootfs, ...)``: a runnable .sif, as `apptainer build` makes one: a squashfs (mksquashfs
  of a copy of ``rootfs`` with ``/.singularity.d/``: env scripts, runscript, labels.json) as the primary system
  partition of this machine's architecture.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpcctl.image.sif import DATA_PARTITION, DESCRIPTOR, GROUP_MASK, HEADER, MAGIC, VERSION, node_arch

GO_ZERO_TIME = -62135596800  # what the reference implementation writes for "no time"
DESCRIPTORS_OFFSET = 4096
FS_SQUASHFS, FS_EXT3, FS_RAW, FS_ENCRYPTED = 1, 2, 4, 5
PART_SYSTEM, PART_PRIMARY = 1, 2
ARCH_CODES = {"unknown": "00", "386": "01", "amd64": "02", "arm": "03", "arm64": "04", "ppc64": "05",
              "ppc64le": "06", "s390x": "11", "riscv64": "12"}


@dataclass(frozen=True)
class SifObject:
    data: bytes
    data_type: int = DATA_PARTITION
    extra: bytes = b""
    group: int = 1  # 0: none
    link: int = 0
    link_group: bool = False
    name: str = ""
    align: int = 4096


def partition(data: bytes, fstype: int = FS_SQUASHFS, parttype: int = PART_PRIMARY, arch: str = "",
              **kwargs) -> SifObject:
    code = ARCH_CODES[arch or node_arch()].encode()
    return SifObject(data, DATA_PARTITION, fstype.to_bytes(4, "little") + parttype.to_bytes(4, "little") + code,
                     **kwargs)


def write(path: Path, objects: list[SifObject], *, arch: str = "", descriptors: int = 48, launch: str = "",
          ident: bytes = bytes(16), created: int = GO_ZERO_TIME) -> Path:
    """``arch``: the header's (the primary partition's, as the reference writes it); '' for unknown ("00")."""
    data_offset = DESCRIPTORS_OFFSET + descriptors * DESCRIPTOR.size
    table, body, end = bytearray(descriptors * DESCRIPTOR.size), bytearray(), data_offset
    for index, obj in enumerate(objects):
        start = -(-end // obj.align) * obj.align
        body += bytes(start - end) + obj.data
        link = (obj.link | GROUP_MASK) if obj.link_group else obj.link
        DESCRIPTOR.pack_into(table, index * DESCRIPTOR.size, obj.data_type, True, index + 1,
                             GROUP_MASK | obj.group, link, start, len(obj.data), start - end + len(obj.data),
                             created, created, 0, 0, obj.name.encode(), obj.extra)
        end = start + len(obj.data)
    header = HEADER.pack(launch.encode(), MAGIC, VERSION.encode(), ARCH_CODES[arch or "unknown"].encode(), ident,
                         created, created, descriptors - len(objects), descriptors, DESCRIPTORS_OFFSET,
                         descriptors * DESCRIPTOR.size, data_offset, end - data_offset)
    with open(path, "wb") as out:
        out.write(header + bytes(DESCRIPTORS_OFFSET - len(header)) + table + body)
    return path


def mksquashfs(tree: Path, out: Path) -> bytes:
    subprocess.run(["mksquashfs", str(tree), str(out), "-noappend", "-all-root", "-no-progress", "-quiet",
                    "-comp", "gzip"], check=True, capture_output=True, timeout=600)
    return out.read_bytes()


def singularity_sif(path: Path, rootfs: Path, env_scripts: dict[str, str] | None = None, runscript: str = "",
                    labels: dict[str, str] | None = None, arch: str = "", fstype: int = FS_SQUASHFS) -> Path:
    """A .sif whose system partition is ``rootfs`` plus ``/.singularity.d`` (``env_scripts``: {name: text} under
    env/, ``runscript``, ``labels``), as Apptainer lays it out."""
    with tempfile.TemporaryDirectory(prefix="sif-writer-") as work:
        tree = Path(work) / "root"
        shutil.copytree(rootfs, tree, symlinks=True, ignore=shutil.ignore_patterns(".complete"))
        meta = tree / ".singularity.d"
        (meta / "env").mkdir(parents=True, exist_ok=True)
        for name, text in (env_scripts or {}).items():
            (meta / "env" / name).write_text(text)
        if runscript:
            (meta / "runscript").write_text(runscript)
            (meta / "runscript").chmod(0o755)
        (meta / "labels.json").write_text(json.dumps(labels or {}, indent=1))
        (meta / "actions").mkdir(exist_ok=True)
        data = mksquashfs(tree, Path(work) / "root.sqsh")
    return write(path, [partition(data, fstype=fstype, arch=arch)], arch=arch or node_arch())
