"""Singularity Image Format (SIF) files, read natively: the global header, the descriptor table, the primary system
partition.

The layout follows the public specification of the apptainer/sif project (``pkg/sif``): a 128-byte little-endian
global header, then ``descriptors_total`` fixed-size 585-byte descriptors at ``descriptors_offset``, then the data
objects. Everything is read with ``os.pread`` from an fd the caller opened (as the user, for images a user names),
and everything read is bounded: a hostile file cannot make this module allocate more than ``MAX_DESCRIPTORS``
descriptors' worth of bytes. Signatures are listed, never verified.
"""

from __future__ import annotations

import os
import platform
import struct
import uuid
from dataclasses import dataclass

from hpcctl.errors import HpcctlError

MAGIC = b"SIF_MAGIC"
VERSION = "01"
HEADER = struct.Struct("<32s10s3s3s16sqqqqqqqq")
DESCRIPTOR = struct.Struct("<i?IIIqqqqqqq128s384s")
MAX_DESCRIPTORS = 1024
GROUP_MASK = 0xF0000000
SQUASHFS_MAGIC = b"hsqs"

DATA_TYPES = {0x4001: "Def.FILE", 0x4002: "Env.Vars", 0x4003: "JSON.Labels", 0x4004: "FS", 0x4005: "Signature",
              0x4006: "JSON.Generic", 0x4007: "Generic/Raw", 0x4008: "Cryptographic Message", 0x4009: "SBOM",
              0x400A: "OCI.RootIndex", 0x400B: "OCI.Blob"}
DATA_PARTITION, DATA_SIGNATURE, DATA_CRYPTO_MESSAGE, DATA_SBOM = 0x4004, 0x4005, 0x4008, 0x4009
DATA_OCI_ROOT_INDEX, DATA_OCI_BLOB = 0x400A, 0x400B
FS_TYPES = {1: "Squashfs", 2: "Ext3", 3: "Archive", 4: "Raw", 5: "Encrypted squashfs"}
FS_SQUASHFS, FS_EXT3, FS_ENCRYPTED_SQUASHFS = 1, 2, 5
PART_TYPES = {1: "System", 2: "*System", 3: "Data", 4: "Overlay"}
PART_PRIMARY_SYSTEM = 2
HASH_TYPES = {1: "SHA-256", 2: "SHA-384", 3: "SHA-512", 4: "BLAKE2s", 5: "BLAKE2b"}
FORMAT_TYPES = {1: "OpenPGP", 2: "PEM"}
MESSAGE_TYPES = {0x100: "Clear Signature", 0x200: "RSA-OAEP"}
SBOM_FORMATS = {1: "cyclonedx-json", 2: "cyclonedx-xml", 3: "github-json", 4: "spdx-json", 5: "spdx-rdf",
                6: "spdx-tag-value", 7: "spdx-yaml", 8: "syft-json"}
ARCHES = {"00": "unknown", "01": "386", "02": "amd64", "03": "arm", "04": "arm64", "05": "ppc64", "06": "ppc64le",
          "07": "mips", "08": "mipsle", "09": "mips64", "10": "mips64le", "11": "s390x", "12": "riscv64"}
_MACHINE_ARCH = {"x86_64": "amd64", "amd64": "amd64", "i386": "386", "i686": "386", "aarch64": "arm64",
                 "arm64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
                 "riscv64": "riscv64"}


class BadSif(HpcctlError):
    """A .sif file hpcctl refuses: corrupt, truncated, hostile, or with a partition it cannot run."""


def node_arch() -> str:
    """This node's architecture in SIF (Go) terms, e.g. ``amd64``."""
    machine = platform.machine()
    return _MACHINE_ARCH.get(machine, machine)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class Partition:
    """Where the root file system lies inside the .sif: ``offset`` and ``size`` in bytes, as the loop device needs."""
    id: int
    offset: int
    size: int
    fstype: str
    parttype: str
    arch: str


@dataclass(frozen=True)
class Descriptor:
    """One used data object of the descriptor table."""
    data_type: int
    id: int
    group_id: int | None
    linked_id: int | None
    linked_group: bool
    offset: int
    size: int
    created: int
    modified: int
    name: str
    extra: bytes

    @property
    def type_name(self) -> str:
        return DATA_TYPES.get(self.data_type, "Unknown")

    def _ints(self, count: int) -> tuple[int, ...]:
        return struct.unpack_from(f"<{count}i", self.extra)

    @property
    def fstype_code(self) -> int:
        """A partition's file system type as stored (FS_SQUASHFS ...)."""
        return self._ints(1)[0]

    @property
    def partition(self) -> tuple[str, str, str] | None:
        """(fstype, parttype, arch) for a partition, else None."""
        if self.data_type != DATA_PARTITION:
            return None
        fstype, parttype = self._ints(2)
        return (FS_TYPES.get(fstype, "Unknown fs-type"), PART_TYPES.get(parttype, "Unknown part-type"),
                ARCHES.get(_text(self.extra[8:11]), "unknown"))

    @property
    def details(self) -> dict[str, str]:
        """The type-specific fields, named as ``siftool info`` names them."""
        if self.partition:
            fstype, parttype, arch = self.partition
            return {"Filesystem Type": fstype, "Partition Type": parttype, "Architecture": arch}
        if self.data_type == DATA_SIGNATURE:
            entity = self.extra[4:24]
            details = {"Hash Type": HASH_TYPES.get(self._ints(1)[0], "Unknown hash-type")}
            if any(entity):
                details["Entity"] = entity.hex().upper()
            return details
        if self.data_type == DATA_CRYPTO_MESSAGE:
            fmt, msg = self._ints(2)
            return {"Format Type": FORMAT_TYPES.get(fmt, "Unknown format-type"),
                    "Message Type": MESSAGE_TYPES.get(msg, "Unknown message-type")}
        if self.data_type == DATA_SBOM:
            return {"Format": SBOM_FORMATS.get(self._ints(1)[0], "unknown")}
        if self.data_type in (DATA_OCI_ROOT_INDEX, DATA_OCI_BLOB):
            return {"Digest": _text(self.extra)}
        return {}

    @property
    def summary(self) -> str:
        """The TYPE column of ``siftool list``."""
        if self.partition:
            return "{} ({}/{}/{})".format(self.type_name, *self.partition)
        extra = self.details
        if self.data_type == DATA_SIGNATURE:
            return f"{self.type_name} ({extra['Hash Type']})"
        if self.data_type == DATA_CRYPTO_MESSAGE:
            return f"{self.type_name} ({extra['Format Type']}/{extra['Message Type']})"
        if self.data_type == DATA_SBOM:
            return f"{self.type_name} ({extra['Format']})"
        return self.type_name


@dataclass(frozen=True)
class SifFile:
    """A parsed SIF: its header fields and used descriptors (in table order)."""
    launch_script: str
    version: str
    arch: str
    id: str | None
    created: int
    modified: int
    descriptors_free: int
    descriptors_total: int
    descriptors_offset: int
    descriptors_size: int
    data_offset: int
    data_size: int
    file_size: int
    descriptors: tuple[Descriptor, ...]
    primary_magic: bytes = b""

    def find(self, data_type: int) -> Descriptor | None:
        return next((d for d in self.descriptors if d.data_type == data_type), None)

    @property
    def system_partition(self) -> Partition:
        """The primary system partition, checked to be a squashfs this node can run; else BadSif, one line."""
        return self.partition_for(node_arch())

    def partition_for(self, host: str | None) -> Partition:
        """The primary system partition, checked to be a squashfs a ``host`` architecture runs (None: any, for a
        submit host that is not a compute node); else BadSif, one line."""
        primaries = _primaries(self.descriptors)
        if not primaries:
            kinds = ", ".join(d.summary for d in self.descriptors) or "no data objects"
            raise BadSif(f"the .sif has no primary system partition (found: {kinds})",
                         "build the image with `apptainer build`, which writes one")
        if len(primaries) > 1:
            raise BadSif(f"the .sif has {len(primaries)} primary system partitions (ids "
                         f"{', '.join(str(d.id) for d in primaries)}); a valid SIF has one",
                         "rebuild the image with `apptainer build`")
        part = primaries[0]
        fstype, parttype, arch = part.partition
        if part.fstype_code == FS_ENCRYPTED_SQUASHFS:
            raise BadSif("the .sif's system partition is an encrypted squashfs, which hpcctl cannot decrypt",
                         "rebuild the image without --encrypt")
        if part.fstype_code == FS_EXT3:
            raise BadSif("the .sif's system partition is an ext3 file system (a writable Singularity 2 image); "
                         "hpcctl runs squashfs partitions only",
                         "convert it once: `apptainer build new.sif old.sif`")
        if part.fstype_code != FS_SQUASHFS:
            raise BadSif(f"the .sif's system partition is of type {fstype}; hpcctl runs squashfs partitions only",
                         "rebuild the image with `apptainer build`")
        if host is not None and arch not in ("unknown", host):
            raise BadSif(f"the .sif is built for {arch}, this node is {host}", f"use an image built for {host}")
        if self.primary_magic != SQUASHFS_MAGIC:
            raise BadSif(f"the .sif's system partition at offset {part.offset} does not start with a squashfs "
                         "superblock", "the file is corrupt: copy or rebuild it")
        return Partition(part.id, part.offset, part.size, "squashfs", parttype, arch)


def _primaries(descriptors) -> list[Descriptor]:
    return [d for d in descriptors if d.partition and d.partition[1] == PART_TYPES[PART_PRIMARY_SYSTEM]]


def _pread(fd: int, size: int, offset: int, what: str) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise BadSif(f"the .sif is truncated: its {what} ends at byte {offset + size}, the file has "
                     f"{offset + len(data)}", "copy the file again in full")
    return data


def read(fd: int) -> SifFile:
    """Parse the header and descriptor table of the SIF open at ``fd``; BadSif, one line, for anything malformed."""
    file_size = os.fstat(fd).st_size
    raw = HEADER.unpack(_pread(fd, HEADER.size, 0, "global header"))
    launch, magic, version, arch, ident, created, modified, free, total, d_off, d_size, data_off, data_size = raw
    if _text(magic).encode() != MAGIC:
        raise BadSif(f"not a SIF file: no SIF_MAGIC at byte 32 (found {magic[:9]!r})",
                     "check the path: a .sif built by Apptainer/Singularity 3 or later starts with one")
    if _text(version) != VERSION:
        raise BadSif(f"the .sif has format version {_text(version)!r}; hpcctl reads version {VERSION}",
                     "rebuild the image with Apptainer 1.x")
    if not 0 < total <= MAX_DESCRIPTORS or not 0 <= free <= total:
        raise BadSif(f"the .sif's header is corrupt: {total} descriptors ({free} free), at most {MAX_DESCRIPTORS} "
                     "are read", "copy or rebuild the file")
    table = total * DESCRIPTOR.size
    if d_off < HEADER.size or d_off > file_size or d_size != table:
        raise BadSif(f"the .sif's header is corrupt: descriptor table at {d_off} of size {d_size} "
                     f"(expected {table}) in a {file_size}-byte file", "copy or rebuild the file")
    data = _pread(fd, table, d_off, "descriptor table")
    descriptors = tuple(_descriptors(data, total, d_off + table, file_size))
    if total - len(descriptors) != free:
        raise BadSif(f"the .sif's header is corrupt: it counts {free} free descriptors, the table has "
                     f"{total - len(descriptors)}", "copy or rebuild the file")
    primary = _primaries(descriptors)
    magic_at = os.pread(fd, 4, primary[0].offset) if len(primary) == 1 and primary[0].size >= 4 else b""
    return SifFile(_text(launch), _text(version), ARCHES.get(_text(arch), "unknown"),
                   None if not any(ident) else str(uuid.UUID(bytes=ident)), created, modified, free, total,
                   d_off, d_size, data_off, data_size, file_size, descriptors, magic_at)


def _descriptors(table: bytes, total: int, data_start: int, file_size: int):
    ids, spans = set(), []
    for index in range(total):
        (dtype, used, ident, group, link, offset, size, _padded, created, modified, _uid, _gid, name,
         extra) = DESCRIPTOR.unpack_from(table, index * DESCRIPTOR.size)
        if not used:
            continue
        where = f"descriptor {index} (id {ident})"
        if ident == 0 or ident in ids:
            raise BadSif(f"the .sif's {where} repeats or lacks an id", "copy or rebuild the file")
        if offset < data_start or size < 0 or offset + size > file_size:
            raise BadSif(f"the .sif's {where} points at bytes {offset}-{offset + size}, outside the data area "
                         f"{data_start}-{file_size}", "the file is truncated or corrupt: copy or rebuild it")
        ids.add(ident)
        spans.append((offset, offset + size, ident))
        yield Descriptor(dtype, ident, None if group == GROUP_MASK or group == 0 else group & ~GROUP_MASK,
                         None if link == 0 else link & ~GROUP_MASK, link & GROUP_MASK == GROUP_MASK, offset, size,
                         created, modified, _text(name), extra)
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            raise BadSif(f"the .sif's data objects {first} and {second} overlap", "the file is corrupt: rebuild it")
