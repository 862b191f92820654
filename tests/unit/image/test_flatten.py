"""Flattening layers into one tar stream: union semantics and every crafted attack."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading

import pytest
from image_layers import BASE, CRAFTED, e, tar_bytes

from hpcctl.image.errors import UnsafeLayer
from hpcctl.image.flatten import Flattener


def flatten(layers_bottom_up: list) -> tuple[dict, object]:
    out = io.BytesIO()
    flat = Flattener(out)
    for number, entries in reversed(list(enumerate(layers_bottom_up))):
        flat.add_layer(io.BytesIO(tar_bytes(entries)), f"layer{number}")
    report = flat.finish()
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tf:
        members = {m.name: (m, tf.extractfile(m).read() if m.isreg() else None) for m in tf.getmembers()}
    return members, report


def test_newest_version_of_a_file_wins():
    members, _ = flatten([BASE + [e("etc/motd", data=b"old")], [e("etc", "dir"), e("etc/motd", data=b"new")]])
    assert members["etc/motd"][1] == b"new"
    assert list(members).count("etc/motd") == 1


def test_whiteout_deletes_a_lower_file_and_is_not_itself_in_the_image():
    members, _ = flatten([BASE + [e("etc/motd", data=b"hi")], [e("etc", "dir"), e("etc/.wh.motd")]])
    assert "etc/motd" not in members and "etc/.wh.motd" not in members
    assert "etc/passwd" in members


def test_whiteout_of_a_directory_deletes_its_whole_subtree():
    lower = BASE + [e("opt", "dir"), e("opt/app", "dir"), e("opt/app/bin", data=b"x")]
    members, _ = flatten([lower, [e("opt", "dir"), e("opt/.wh.app")]])
    assert not any(name.startswith("opt/app") for name in members)


def test_opaque_directory_hides_lower_contents_but_keeps_its_own():
    lower = BASE + [e("etc/old.conf", data=b"old")]
    upper = [e("etc", "dir"), e("etc/.wh..wh..opq"), e("etc/new.conf", data=b"new")]
    members, _ = flatten([lower, upper])
    assert "etc/new.conf" in members and "etc/old.conf" not in members and "etc/passwd" not in members
    assert "etc" in members


def test_a_whiteout_applies_to_lower_layers_only():
    members, _ = flatten([BASE, [e("etc", "dir"), e("etc/.wh.x"), e("etc/x", data=b"same layer")]])
    assert members["etc/x"][1] == b"same layer"


def test_upper_layer_replacing_a_directory_by_a_symlink_hides_the_lower_tree():
    lower = BASE + [e("data", "dir"), e("data/a", data=b"a")]
    members, _ = flatten([lower, [e("data", "symlink", link="/srv/data")]])
    assert members["data"][0].issym() and "data/a" not in members


def test_hardlink_within_a_layer_is_kept():
    members, _ = flatten([BASE, [e("bin", "dir"), e("bin/perl", data=b"perl"), e("bin/perl5", "hardlink",
                                                                               link="bin/perl")]])
    assert members["bin/perl5"][0].islnk() and members["bin/perl5"][0].linkname == "bin/perl"


def test_hardlink_to_a_file_a_newer_layer_replaced_keeps_the_old_content():
    lower = BASE + [e("bin", "dir"), e("bin/a", data=b"old"), e("bin/b", "hardlink", link="bin/a")]
    members, _ = flatten([lower, [e("bin", "dir"), e("bin/a", data=b"new")]])
    assert members["bin/a"][1] == b"new" and members["bin/b"][0].isreg() and members["bin/b"][1] == b"old"


def test_truncated_layer_is_refused():
    data = tar_bytes([e("big", data=b"x" * 100000)])[:20000]
    with pytest.raises(UnsafeLayer, match="layer cut is not a valid tar archive in or after entry 'big': unexpected"):
        flat = Flattener(io.BytesIO())
        flat.add_layer(io.BytesIO(data), "cut")


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_layer(name, tmp_path):
    case = CRAFTED[name]
    if case.rejected:
        with pytest.raises(UnsafeLayer, match=case.rejected) as info:
            flatten(case.layers)
        assert "\n" not in str(info.value)
        assert not (tmp_path.parent / "hpcctl-escape").exists()
        return
    members, _ = flatten(case.layers)
    for path in case.absent:
        assert path not in members
    for path in case.present:
        assert path in members
    for member, _ in members.values():
        assert not member.mode & 0o6000, member.name
        assert not member.ischr() and not member.isblk()
        assert all(k.startswith("SCHILY.xattr.user.") for k in member.pax_headers if "xattr" in k)


def test_symlinks_pointing_outside_are_stored_verbatim_as_data():
    members, _ = flatten(CRAFTED["symlink-outside-kept-as-data"].layers)
    assert members["etc/shadow-link"][0].linkname == "/etc/shadow"


def test_report_counts_what_was_neutralized():
    _, report = flatten(CRAFTED["setuid-setgid"].layers)
    assert report.setid_cleared == 2
    _, report = flatten(CRAFTED["device-nodes"].layers)
    assert report.devices_dropped == 2
    _, report = flatten(CRAFTED["file-capabilities"].layers)
    assert report.xattrs_dropped == 1
    assert "1 security xattrs dropped" in report.notes()


def test_merged_stream_makes_a_squashfs_with_the_union(tmp_path):
    lower = BASE + [e("etc/motd", data=b"hi"), e("usr", "dir"), e("usr/bin", "dir"), e("usr/bin/tool", data=b"t",
                                                                                          mode=0o4755)]
    upper = [e("etc", "dir"), e("etc/.wh.motd"), e("etc/new", data=b"n")]
    out = tmp_path / "img.sqsh"
    proc = subprocess.Popen(["tar2sqfs", "-q", "-f", "-c", "zstd", str(out)], stdin=subprocess.PIPE)
    flat = Flattener(proc.stdin)
    flat.add_layer(io.BytesIO(tar_bytes(upper)), "upper")
    flat.add_layer(io.BytesIO(tar_bytes(lower)), "lower")
    flat.finish()
    proc.stdin.close()
    assert proc.wait() == 0
    listing = subprocess.run(["unsquashfs", "-lln", str(out)], capture_output=True, text=True, check=True).stdout
    assert "squashfs-root/etc/new" in listing and "squashfs-root/etc/motd" not in listing
    tool = next(line for line in listing.splitlines() if line.endswith("usr/bin/tool"))
    assert tool.startswith("-rwxr-xr-x")


def content(members: dict, name: str) -> bytes:
    """The bytes ``name`` reads as in the flattened image (through a hardlink when it is one)."""
    member, data = members[name]
    return members[member.linkname][1] if member.islnk() else data


def pair(first: str, second: str, data: bytes = b"old") -> list:
    """A base layer holding 'e/first' as the file and 'e/second' as its hardlink."""
    return BASE + [e("e", "dir"), e(f"e/{first}", data=data), e(f"e/{second}", "hardlink", link=f"e/{first}")]


@pytest.mark.parametrize("first,second", [("a", "b"), ("b", "a")])
def test_chmod_of_one_name_of_a_linked_pair_leaves_the_other_with_the_old_file(first, second):
    members, _ = flatten([pair(first, second), [e("e", "dir"), e("e/a", data=b"old", mode=0o755)]])
    assert members["e/a"][0].isreg() and members["e/a"][0].mode == 0o755 and members["e/a"][1] == b"old"
    assert members["e/b"][0].isreg() and members["e/b"][0].mode == 0o644 and members["e/b"][1] == b"old"


@pytest.mark.parametrize("first,second", [("a", "b"), ("b", "a")])
def test_append_to_one_name_of_a_linked_pair_keeps_the_old_content_in_the_other(first, second):
    members, _ = flatten([pair(first, second), [e("e", "dir"), e("e/a", data=b"old\nx\n")]])
    assert content(members, "e/a") == b"old\nx\n" and content(members, "e/b") == b"old"


@pytest.mark.parametrize("first,second", [("a", "b"), ("b", "a")])
@pytest.mark.parametrize("removed,kept", [("a", "b"), ("b", "a")])
def test_rm_of_either_name_of_a_linked_pair_keeps_the_other(first, second, removed, kept):
    members, _ = flatten([pair(first, second), [e("e", "dir"), e(f"e/.wh.{removed}")]])
    assert f"e/{removed}" not in members
    assert members[f"e/{kept}"][0].isreg() and members[f"e/{kept}"][1] == b"old"


def test_the_survivors_of_a_group_stay_linked_to_the_first_of_them():
    base = BASE + [e("e", "dir"), e("e/a", data=b"old"), e("e/b", "hardlink", link="e/a"),
                   e("e/c", "hardlink", link="e/a")]
    members, _ = flatten([base, [e("e", "dir"), e("e/a", data=b"new")]])
    assert members["e/b"][0].isreg() and members["e/b"][1] == b"old"
    assert members["e/c"][0].islnk() and members["e/c"][0].linkname == "e/b"
    assert content(members, "e/a") == b"new"


def test_link_of_an_upper_layer_to_a_lower_file_that_a_whiteout_removed_keeps_the_content():
    lower = BASE + [e("e", "dir"), e("e/a", data=b"old")]
    middle = [e("e", "dir"), e("e/b", "hardlink", link="e/a")]
    members, _ = flatten([lower, middle, [e("e", "dir"), e("e/.wh.a")]])
    assert "e/a" not in members and members["e/b"][0].isreg() and members["e/b"][1] == b"old"


def test_link_to_a_lower_file_a_newer_layer_replaced_keeps_the_content_it_linked():
    lower = BASE + [e("e", "dir"), e("e/a", data=b"old")]
    middle = [e("e", "dir"), e("e/b", "hardlink", link="e/a"), e("e/c", "hardlink", link="e/b")]
    members, _ = flatten([lower, middle, [e("e", "dir"), e("e/a", data=b"new")]])
    assert content(members, "e/a") == b"new"
    assert members["e/b"][0].isreg() and members["e/b"][1] == b"old"
    assert members["e/c"][0].islnk() and members["e/c"][0].linkname == "e/b"


@pytest.mark.parametrize("first,second", [("d/a", "b"), ("b", "d/a")])
def test_link_target_hidden_by_a_directory_removed_and_recreated(first, second):
    base = BASE + [e("e", "dir"), e("e/d", "dir"), e(f"e/{first}", data=b"old"),
                   e(f"e/{second}", "hardlink", link=f"e/{first}")]
    members, _ = flatten([base, [e("e", "dir"), e("e/d", "dir"), e("e/d/.wh..wh..opq"), e("e/d/new", data=b"n")]])
    assert "e/d/a" not in members and members["e/b"][0].isreg() and members["e/b"][1] == b"old"


def test_hardlink_to_a_symlink_or_fifo_becomes_a_copy_of_it():
    layer = [e("e", "dir"), e("e/s", "symlink", link="target"), e("e/s2", "hardlink", link="e/s"),
             e("e/f", "fifo"), e("e/f2", "hardlink", link="e/f")]
    members, _ = flatten([BASE, layer])
    assert members["e/s2"][0].issym() and members["e/s2"][0].linkname == "target"
    assert members["e/f2"][0].isfifo()


def test_hardlink_to_a_lower_symlink_becomes_a_copy_of_it():
    members, _ = flatten([BASE + [e("s", "symlink", link="etc")], [e("s2", "hardlink", link="s")]])
    assert members["s2"][0].issym() and members["s2"][0].linkname == "etc"


def test_setgid_stays_on_directories_and_setid_bits_leave_files():
    layer = [e("shared", "dir", mode=0o2775), e("odd", "dir", mode=0o6755), e("shared/tool", data=b"x", mode=0o6755)]
    members, report = flatten([BASE, layer])
    assert members["shared"][0].mode == 0o2775 and members["odd"][0].mode == 0o2755
    assert members["shared/tool"][0].mode == 0o755
    assert report.setid_cleared == 2


def test_mtimes_past_2106_are_clamped_and_said_once():
    late = [e(f"late{n}", data=b"x") for n in range(3)]
    for info in late:
        info.mtime = 1 << 33
    members, report = flatten([BASE, late])
    assert {members[f"late{n}"][0].mtime for n in range(3)} == {0xFFFFFFFF}
    assert [note for note in report.notes() if "2106" in note] == ["3 mtimes past 2106 clamped to 2106-02-07"]


def test_a_link_to_a_directory_names_the_layer_the_path_and_the_problem():
    with pytest.raises(UnsafeLayer, match="layer layer1: hardlink 'etc/h' points to 'etc', which is a directory"):
        flatten([BASE, [e("etc/h", "hardlink", link="etc")]])


def _pipe_of(data: bytes):
    """A pipe's read end (as the decompressor's stdout is) fed with ``data`` by a thread."""
    read_fd, write_fd = os.pipe()

    def feed():
        with open(write_fd, "wb") as sink:
            sink.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return open(read_fd, "rb", buffering=0)


def test_spilled_files_reach_the_squashfs_through_pipes_as_linked_files(tmp_path):
    big = os.urandom(3 << 20)
    base = BASE + [e("e", "dir"), e("e/a", data=big), e("e/b", "hardlink", link="e/a"),
                   e("e/c", "hardlink", link="e/a")]
    upper = [e("e", "dir"), e("e/a", data=b"new", mode=0o755)]
    out = tmp_path / "img.sqsh"
    proc = subprocess.Popen(["tar2sqfs", "-q", "-f", "-c", "zstd", str(out)], stdin=subprocess.PIPE, bufsize=0)
    flat = Flattener(proc.stdin, spill_dir=str(tmp_path))
    for number, layer in ((1, upper), (0, base)):
        with _pipe_of(tar_bytes(layer)) as stream:
            flat.add_layer(stream, f"layer{number}")
    flat.finish()
    proc.stdin.close()
    assert proc.wait() == 0
    root = tmp_path / "root"
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(root), str(out)], check=True, capture_output=True)
    assert (root / "e/a").read_bytes() == b"new"
    assert (root / "e/b").read_bytes() == big and (root / "e/b").stat().st_ino == (root / "e/c").stat().st_ino
    assert (root / "e/b").stat().st_nlink == 2 and (root / "e/a").stat().st_nlink == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.sqsh", "root"]
