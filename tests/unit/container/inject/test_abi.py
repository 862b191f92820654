"""ABI rules from library file names, and reading an image's libraries inside its own tree."""

import os

import pytest
from fake_gpu_host import image

from hpcctl.container.inject import abi, container_libs
from hpcctl.container.inject.gres import gpu_files
from hpcctl.slurm.hostlist import expand


@pytest.mark.parametrize("name,linker,version", [
    ("/usr/lib/libmpi.so.40.30.4", "libmpi.so", (40, 30, 4)),
    ("libevent_core-2.1.so.7.0.1", "libevent_core-2.1.so", (7, 0, 1)),
    ("libmpi.so", "libmpi.so", ()),
])
def test_parse(name, linker, version):
    parsed = abi.parse(name)
    assert (parsed.linker, parsed.version) == (linker, version)


def test_parse_rejects_non_libraries():
    assert abi.parse("nvidia-smi") is None


@pytest.mark.parametrize("mode,host,container,reason", [
    ("major", "40.30.4", "40.31.0", None),
    ("major", "40.30.4", "12.1.1", "major version 40 != 12"),
    ("full", "40.30.4", "40.30.9", None),
    ("full", "40.30.4", "40.31.0", "host minor version 30 is older than the container's 31"),
    ("strict", "40.30.4", "40.30.4", None),
    ("strict", "40.30.4", "40.30.2", "versions differ (40.30.4 != 40.30.2)"),
    ("none", "40.30.4", "12.1.1", None),
])
def test_modes(mode, host, container, reason):
    assert abi.incompatibility(mode, abi.parse(f"libmpi.so.{host}"), abi.parse(f"libmpi.so.{container}")) == reason


def test_links_resolve_inside_the_image(tmp_path):
    root = image(tmp_path, {"libmpi.so.40.30.2": "libmpi.so.40"})
    assert container_libs.resolve_in_root(str(root), "/lib/x86_64-linux-gnu/libmpi.so.40") == \
        "/usr/lib/x86_64-linux-gnu/libmpi.so.40.30.2"
    os.symlink("/etc/passwd", root / "usr/lib/escape")
    assert container_libs.resolve_in_root(str(root), "/usr/lib/escape") == "/etc/passwd"
    libs = container_libs.ImageLibraries(str(root)).named("libmpi.so")
    assert [(lib.real, lib.version.version) for lib in libs] == [("/usr/lib/x86_64-linux-gnu/libmpi.so.40.30.2",
                                                                   (40, 30, 2))]


def test_gres_conf_files_per_node():
    text = ("AutoDetect=off\nNodeName=n[1-2] Name=gpu File=/dev/nvidia[0-1]  # two each\n"
            "NodeName=n3 Name=gpu Type=a100 File=/dev/nvidia[0-3]\nName=mps Count=100\n")
    assert gpu_files(text, "n2") == ["/dev/nvidia0", "/dev/nvidia1"]
    assert gpu_files(text, "n3") == [f"/dev/nvidia{i}" for i in range(4)]
    assert expand("gpu[01-02,7]x") == ["gpu01x", "gpu02x", "gpu7x"]
