"""Flattening layers into one tar stream: union semantics and every crafted attack."""

from __future__ import annotations

import io
import subprocess
import tarfile

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


def test_hardlink_to_a_file_a_newer_layer_replaced_is_refused():
    lower = BASE + [e("bin", "dir"), e("bin/a", data=b"old"), e("bin/b", "hardlink", link="bin/a")]
    with pytest.raises(UnsafeLayer, match="newer layer replaced"):
        flatten([lower, [e("bin", "dir"), e("bin/a", data=b"new")]])


def test_truncated_layer_is_refused():
    data = tar_bytes([e("big", data=b"x" * 100000)])[:20000]
    with pytest.raises(UnsafeLayer):
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
