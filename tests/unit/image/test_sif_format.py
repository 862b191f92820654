"""The SIF reader (hpcctl.image.sif) against the reference implementation's own files and `siftool` output in
../shared/sif-testdata, the test writer (hpcctl.sandbox.sif_writer) against both, and every refusal as one line."""

from __future__ import annotations

import datetime
import os
import struct
import tracemalloc
from pathlib import Path

import pytest

from hpcctl.image import sif
from hpcctl.sandbox import sif_writer as w

TESTDATA = Path(__file__).resolve().parents[4] / "shared" / "sif-testdata"
IMAGES, GOLDEN, INPUT = TESTDATA / "images", TESTDATA / "golden", TESTDATA / "input"
CAMEL = {"one-group": "OneGroup", "two-groups": "TwoGroups", "empty": "Empty", "empty-id": "EmptyID",
         "empty-launch-script": "EmptyLaunchScript", "one-object-crypt-message": "OneObjectCryptMessage",
         "one-object-generic-json": "OneObjectGenericJSON", "one-object-oci-blob": "OneObjectOCIBlob",
         "one-object-oci-root-index": "OneObjectOCIRootIndex", "one-object-sbom": "OneObjectSBOM",
         "one-object-time": "OneObjectTime", "one-group-signed-pgp": "OneGroupSignedPGP",
         "two-groups-signed-pgp": "TwoGroupsSignedPGP", "one-group-signed-legacy": "OneGroupSignedLegacy",
         "one-group-signed-legacy-all": "OneGroupSignedLegacyAll",
         "one-group-signed-legacy-group": "OneGroupSignedLegacyGroup",
         "two-groups-signed-legacy": "TwoGroupsSignedLegacy",
         "two-groups-signed-legacy-all": "TwoGroupsSignedLegacyAll",
         "two-groups-signed-legacy-group": "TwoGroupsSignedLegacyGroup"}
INFO = {"DataPartitionSquashFS": ("one-group", 2), "DataPartitionEXT3": ("two-groups", 3),
        "DataPartitionRaw": ("one-group", 1), "DataSignature": ("two-groups-signed-pgp", 4),
        "CryptMessage": ("one-object-crypt-message", 1), "Time": ("one-object-time", 1),
        "OCIBlob": ("one-object-oci-blob", 1), "OCIRootIndex": ("one-object-oci-root-index", 1),
        "GenericJSON": ("one-object-generic-json", 1), "SBOM": ("one-object-sbom", 1)}

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason="../shared/sif-testdata is not there")


def load(path: Path) -> sif.SifFile:
    fd = os.open(path, os.O_RDONLY)
    try:
        return sif.read(fd)
    finally:
        os.close(fd)


def refusal(path: Path) -> str:
    """The one line a refused file gets (from reading it, or from asking for its system partition)."""
    with pytest.raises(sif.BadSif) as caught:
        load(path).system_partition
    assert "\n" not in str(caught.value)
    return str(caught.value)


# --- `siftool header|list|info` as the reference prints them, from our reader's fields --------------------------
def _size(n: int) -> str:
    units, value = ["B", "KiB", "MiB", "GiB"], float(n)
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.0f} {units[0]}"


def _time(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _aligned(rows: list[tuple[str, object]], indent: str, gap: int) -> str:
    width = max(len(k) for k, _ in rows) + 1 + gap
    return "".join(f"{indent}{k + ':':<{width}}{v}\n" for k, v in rows)


def header_text(f: sif.SifFile) -> str:
    rows = [("Launch Script", f.launch_script.rstrip("\n"))] if f.launch_script else []
    rows.append(("Version", f.version))
    if f.arch != "unknown":
        rows.append(("Primary Architecture", f.arch))
    if f.id:
        rows.append(("ID", f.id))
    if f.created != w.GO_ZERO_TIME:
        rows += [("Created At", _time(f.created)), ("Modified At", _time(f.modified))]
    rows += [("Descriptors Free", f.descriptors_free), ("Descriptors Total", f.descriptors_total),
             ("Descriptors Offset", f.descriptors_offset), ("Descriptors Size", _size(f.descriptors_size)),
             ("Data Offset", f.data_offset), ("Data Size", _size(f.data_size))]
    return _aligned(rows, "", 1)


def _link(d: sif.Descriptor) -> str:
    return "NONE" if d.linked_id is None else f"{d.linked_id:<3} (G)" if d.linked_group else str(d.linked_id)


def list_text(f: sif.SifFile) -> str:
    line = "-" * 78 + "\n"
    out = line + "ID   |GROUP   |LINK    |SIF POSITION (start-end)  |TYPE\n" + line
    for d in f.descriptors:
        group = "NONE" if d.group_id is None else str(d.group_id)
        out += f"{d.id:<4} |{group:<7} |{_link(d):<7} |{f'{d.offset}-{d.offset + d.size}':<25} |{d.summary}\n"
    return out


def info_text(d: sif.Descriptor) -> str:
    rows = [("Data Type", d.type_name), ("ID", d.id), ("Group ID", "NONE" if d.group_id is None else d.group_id),
            ("Linked ID", "NONE" if d.linked_id is None else f"{d.linked_id}{' (G)' * d.linked_group}"),
            ("Offset", d.offset), ("Size", d.size)]
    if d.created != w.GO_ZERO_TIME:
        rows += [("Created At", _time(d.created)), ("Modified At", _time(d.modified))]
    if d.name:
        rows.append(("Name", d.name))
    rows += list(d.details.items())
    return _aligned(rows, "  ", 2)


@pytest.mark.parametrize("name", sorted(CAMEL))
def test_the_reader_gives_siftool_header_and_list_of_every_reference_file(name):
    parsed = load(IMAGES / f"{name}.sif")
    assert header_text(parsed) == (GOLDEN / "TestApp_Header" / f"{CAMEL[name]}.golden").read_text()
    assert list_text(parsed) == (GOLDEN / "TestApp_List" / f"{CAMEL[name]}.golden").read_text()


@pytest.mark.parametrize("golden", sorted(INFO))
def test_the_reader_gives_siftool_info_of_each_kind_of_object(golden):
    name, ident = INFO[golden]
    descriptor = next(d for d in load(IMAGES / f"{name}.sif").descriptors if d.id == ident)
    assert info_text(descriptor) == (GOLDEN / "TestApp_Info" / f"{golden}.golden").read_text()


def test_the_writer_makes_the_reference_files_byte_for_byte(tmp_path):
    squashfs, ext3, raw = (INPUT / "root.squashfs").read_bytes(), (INPUT / "root.ext3").read_bytes(), \
        bytes.fromhex("facefeed")
    one = [w.partition(raw, w.FS_RAW, w.PART_SYSTEM, "386"), w.partition(squashfs, arch="386")]
    two = [*one, w.partition(ext3, w.FS_EXT3, w.PART_SYSTEM, "amd64", group=2)]
    assert w.write(tmp_path / "one.sif", one, arch="386").read_bytes() == (IMAGES / "one-group.sif").read_bytes()
    assert w.write(tmp_path / "two.sif", two, arch="386").read_bytes() == (IMAGES / "two-groups.sif").read_bytes()


def test_a_runnable_sif_gives_its_squashfs_partition(tmp_path):
    squashfs = (INPUT / "root.squashfs").read_bytes()
    path = w.write(tmp_path / "ok.sif", [w.SifObject(b"Bootstrap: docker\n", 0x4001, align=1),
                                         w.partition(squashfs)], arch=sif.node_arch())
    part = load(path).system_partition
    assert (part.offset, part.size, part.fstype, part.arch) == (32768, len(squashfs), "squashfs", sif.node_arch())
    with open(path, "rb") as fh:
        fh.seek(part.offset)
        assert fh.read(part.size) == squashfs


@pytest.mark.parametrize("name", ["two-groups-signed-pgp", "two-groups-signed-dsse"])
def test_signed_reference_files_are_read_and_their_signatures_listed(name):
    """Signatures are not verified: a signed .sif runs like any other (see the README)."""
    parsed = load(IMAGES / f"{name}.sif")
    assert [d.summary for d in parsed.descriptors if d.data_type == sif.DATA_SIGNATURE] == ["Signature (SHA-256)"] * 2


# --- refusals: one line each, naming what was found ---------------------------------------------------------
def test_an_ext3_partition_is_refused(tmp_path):
    path = w.write(tmp_path / "x.sif", [w.partition((INPUT / "root.ext3").read_bytes(), w.FS_EXT3)])
    assert refusal(path) == ("the .sif's system partition is an ext3 file system (a writable Singularity 2 image); "
                             "hpcctl runs squashfs partitions only (convert it once: `apptainer build new.sif "
                             "old.sif`)")


def test_an_encrypted_partition_is_refused(tmp_path):
    path = w.write(tmp_path / "x.sif", [w.partition(b"\0" * 4096, w.FS_ENCRYPTED)])
    assert refusal(path) == ("the .sif's system partition is an encrypted squashfs, which hpcctl cannot decrypt "
                             "(rebuild the image without --encrypt)")


def test_no_system_partition_is_refused_naming_what_there_is():
    assert refusal(IMAGES / "one-object-sbom.sif") == (
        "the .sif has no primary system partition (found: SBOM (cyclonedx-json)) (build the image with "
        "`apptainer build`, which writes one)")
    assert "found: no data objects" in refusal(IMAGES / "empty.sif")


def test_another_architecture_is_refused():
    assert refusal(IMAGES / "one-group.sif") == (f"the .sif is built for 386, this node is {sif.node_arch()} "
                                                 f"(use an image built for {sif.node_arch()})")


def test_a_truncated_file_is_refused(tmp_path):
    data = (IMAGES / "one-group.sif").read_bytes()
    (tmp_path / "head.sif").write_bytes(data[:100])
    (tmp_path / "table.sif").write_bytes(data[:5000])
    (tmp_path / "data.sif").write_bytes(data[:38000])
    assert refusal(tmp_path / "head.sif") == ("the .sif is truncated: its global header ends at byte 128, the file "
                                              "has 100 (copy the file again in full)")
    assert refusal(tmp_path / "table.sif").startswith("the .sif is truncated: its descriptor table ends at byte "
                                                      "32176, the file has 5000")
    assert refusal(tmp_path / "data.sif").startswith("the .sif's descriptor 1 (id 2) points at bytes 36864-40960, "
                                                     "outside the data area 32176-38000")


def _patched(tmp_path: Path, offset: int, fmt: str, value) -> Path:
    data = bytearray((IMAGES / "one-group.sif").read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path = tmp_path / "patched.sif"
    path.write_bytes(bytes(data))
    return path


def test_a_corrupt_header_is_refused(tmp_path):
    assert refusal(_patched(tmp_path, 32, "<9s", b"NOT_MAGIC")).startswith("not a SIF file: no SIF_MAGIC at byte 32")
    assert refusal(_patched(tmp_path, 42, "<2s", b"07")) == ("the .sif has format version '07'; hpcctl reads "
                                                            "version 01 (rebuild the image with Apptainer 1.x)")
    assert refusal(_patched(tmp_path, 0x68, "<q", 999)).startswith(
        "the .sif's header is corrupt: descriptor table at 4096 of size 999 (expected 28080)")
    assert refusal(_patched(tmp_path, 0x50, "<q", 40)) == (
        "the .sif's header is corrupt: it counts 40 free descriptors, the table has 46 (copy or rebuild the file)")


def test_hostile_layouts_are_refused(tmp_path):
    descriptor = 4096 + sif.DESCRIPTOR.size  # the second descriptor (the squashfs partition)
    assert "outside the data area" in refusal(_patched(tmp_path, descriptor + 17, "<q", 0))  # over the header
    assert "outside the data area" in refusal(_patched(tmp_path, descriptor + 25, "<q", 1 << 62))  # size past EOF
    assert "outside the data area" in refusal(_patched(tmp_path, descriptor + 17, "<q", -4096))
    assert refusal(_patched(tmp_path, descriptor + 17, "<q", 32768)) == (
        "the .sif's data objects 1 and 2 overlap (the file is corrupt: rebuild it)")
    assert refusal(_patched(tmp_path, descriptor + 5, "<I", 1)).startswith(
        "the .sif's descriptor 1 (id 1) repeats or lacks an id")


@pytest.mark.parametrize("total", [1025, 1 << 40, -1])
def test_a_huge_descriptor_count_is_refused_without_allocating(tmp_path, total):
    path = _patched(tmp_path, 0x58, "<q", total)
    tracemalloc.start()
    try:
        message = refusal(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message.startswith(f"the .sif's header is corrupt: {total} descriptors")
    assert peak < 256 << 10
