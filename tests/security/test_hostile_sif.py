"""A hostile .sif, passed by hpcuser: its header and descriptors are read by the root-run core (as the user, bounded),
and its partition's offset and size go to the loop device root sets up. Nothing in it may make root allocate much,
read past the partition, or show a host file."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hpcctl.image import sif
from hpcctl.sandbox import sif_writer
from hpcctl.sandbox.test_images import busybox_tree
from tests.conftest import hpcctl_cmd
from tests.integration.plugin_helpers import NO_MPI, srun, work

pytestmark = pytest.mark.integration
__all__ = ["work"]  # module fixture

EXEC = "/usr/local/lib/hpcctl/hpcctl-exec"
PARTITION = 4096  # the descriptor of the partition, the only object of sif_writer.singularity_sif's files


def own(path: Path) -> Path:
    shutil.chown(path, "hpcuser", "hpcuser")
    return path


@pytest.fixture(scope="module")
def good(work) -> Path:
    return sif_writer.singularity_sif(work / "good.sif", busybox_tree(), {"01-x.sh": "export X=1\n"})


def patched(good: Path, name: str, offset: int, fmt: str, value) -> Path:
    data = bytearray(good.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path = good.parent / name
    path.write_bytes(bytes(data))
    return own(path)


def error_line(result) -> str:
    return next(line for line in result.stderr.splitlines() if "error: --container-image" in line)


def test_a_huge_descriptor_count_is_refused_at_once(sandbox, work, good):
    path = patched(good, "huge.sif", 0x58, "<q", 1 << 60)
    started = time.monotonic()
    r = srun(sandbox, f"--container-image={path}", NO_MPI, "true", cwd=work)
    assert r.returncode != 0 and time.monotonic() - started < 30
    assert error_line(r) == (f"srun: error: --container-image: {path}: the .sif's header is corrupt: "
                             f"{1 << 60} descriptors (47 free), at most 1024 are read (copy or rebuild the file)")


@pytest.mark.parametrize("name, field, value, found", [
    ("over-header.sif", 17, 0, "points at bytes 0-"),  # the partition laid over the header and descriptors
    ("past-end.sif", 25, 1 << 40, "points at bytes 32768-"),  # a size far past the end of the file
    ("negative.sif", 17, -(1 << 40), "points at bytes -"),
])
def test_a_partition_outside_the_files_data_is_refused(sandbox, work, good, name, field, value, found):
    path = patched(good, name, PARTITION + field, "<q", value)
    r = srun(sandbox, f"--container-image={path}", NO_MPI, "true", cwd=work)
    assert r.returncode != 0
    line = error_line(r)
    assert found in line and "outside the data area 32176-" in line, line


def test_the_loop_device_ends_where_the_partition_does(sandbox, work, good, tmp_path):
    """A partition that claims less than its squashfs holds: the loop devices (the core's view and the C side's)
    are limited to the claimed bytes, so the kernel refuses the truncated squashfs instead of reading on into the
    rest of the file."""
    size = struct.unpack_from("<q", good.read_bytes(), PARTITION + 25)[0]
    path = patched(good, "short.sif", PARTITION + 25, "<q", size // 2)
    r = srun(sandbox, f"--container-image={path}", NO_MPI, "cat", "/.singularity.d/env/01-x.sh", cwd=work)
    assert r.returncode != 0 and "export X=1" not in r.stdout
    assert "mount the image as squashfs: Invalid argument" in r.stderr, r.stderr
    plan = json.loads(subprocess.run(hpcctl_cmd("run", "--plan-only", "--json", "--user", "hpcuser", "--mpi", "none",
                                                str(own(good)), "--", "cat", "/.singularity.d/env/01-x.sh"),
                                     capture_output=True, text=True, check=True, timeout=120, cwd="/").stdout)
    assert (plan["plan"]["image_offset"], plan["plan"]["image_size"]) == (32768, size)
    for claimed, works in ((size, True), (size // 2, False)):
        plan["plan"]["image_size"] = claimed
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        ran = subprocess.run([EXEC, str(tmp_path / "plan.json"), "--", *plan["command"]], capture_output=True,
                             text=True, timeout=60, cwd="/")
        assert ("export X=1" in ran.stdout) is works, ran.stderr
        assert works or f"cannot mount {good} as squashfs" in ran.stderr


def test_inspect_as_root_shows_the_images_files_not_the_hosts(sandbox, work):
    """Root inspecting a user's .sif whose labels.json and runscript are links to host files gets the image's view
    (links resolved inside the image), never the host's /etc/shadow."""
    tree = work / "hostile-tree"
    shutil.copytree(busybox_tree(), tree, symlinks=True)
    (tree / ".singularity.d").mkdir()
    os.symlink("/etc/shadow", tree / ".singularity.d/labels.json")
    os.symlink("/etc/shadow", tree / ".singularity.d/runscript")
    path = work / "links.sif"
    with tempfile.TemporaryDirectory() as scratch:
        data = sif_writer.mksquashfs(tree, Path(scratch) / "x.sqsh")
    own(sif_writer.write(path, [sif_writer.partition(data)], arch=sif.node_arch()))
    r = subprocess.run(hpcctl_cmd("image", "inspect", "--json", str(path)), capture_output=True, text=True,
                       timeout=120, check=True)
    found = json.loads(r.stdout)
    assert found["labels"] == {} and found["runscript"] == ""
    assert "root:" not in r.stdout


def test_a_fifo_named_like_a_sif_blocks_nobody(sandbox, work):
    """Opened O_NONBLOCK and refused unread: neither the submit check nor the node's root core waits on a writer."""
    path = work / "fifo.sif"
    os.mkfifo(path)
    own(path)
    started = time.monotonic()
    r = srun(sandbox, f"--container-image={path}", NO_MPI, "true", cwd=work, timeout=60)
    assert r.returncode != 0 and time.monotonic() - started < 30
    assert error_line(r) == (f"hpcctl: error: --container-image: {path}: not a regular file (pass a .sif file that "
                             "exists on the compute nodes and that you can read)")
