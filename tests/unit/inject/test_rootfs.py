"""Reading an image's tree for injection: a squashfs needs squashfuse, and its absence is one clear line."""

import subprocess

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.inject.rootfs import opened


def test_a_squashfs_without_squashfuse_is_a_clear_error(tmp_path, monkeypatch):
    image = tmp_path / "img.sqsh"
    (tmp_path / "tree").mkdir()
    subprocess.run(["mksquashfs", str(tmp_path / "tree"), str(image), "-quiet", "-noappend"], check=True)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # a node without squashfuse
    with pytest.raises(HpcctlError) as err:
        with opened(str(image)):
            pass
    assert str(err.value) == (f"cannot read the libraries of {image}: squashfuse is not installed on this node "
                              "(install squashfuse (apt-get install squashfuse), or pass an unpacked root tree)")


def test_a_directory_is_used_as_it_is(tmp_path):
    with opened(str(tmp_path)) as root:
        assert root == str(tmp_path)
