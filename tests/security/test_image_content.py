"""Root never runs or parses image content on the host's view of the system (issue 10, class 2).

Each image here is what a user could push or pass as --container-image=FILE. The steps run as the sandbox user with
the site's default MPI, so the container's linker cache is rebuilt (the path that ran ldconfig as root). What is
checked is what an admin would see on the node afterwards: no host file created or changed, no root process, loop
device or mount left behind, and a step that ends within its bound.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import srun, work
from tests.security.hostile_images import build, shared_object

pytestmark = pytest.mark.integration
__all__ = ["work"]  # module fixture


@pytest.fixture
def root_only_dir():
    """An empty root-owned 0700 directory on the host."""
    path = Path("/root") / f"hpcctl-sec-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def leftovers(image: Path) -> list[str]:
    """Loop devices, mounts and root helper processes that still use ``image`` or run ldconfig."""
    found = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True).stdout.splitlines()
    found += [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(image) in line]
    ps = subprocess.run(["ps", "-eo", "user=,args="], capture_output=True, text=True).stdout.splitlines()
    found += [p for p in ps if p.split()[0] == "root" and ("ldconfig" in p or str(image) in p)]
    return found


def settled(image: Path, seconds: float = 10) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := leftovers(image)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def run_in(sandbox, work, image: Path, *command: str, timeout: float = 150):
    return srun(sandbox, f"--container-image={image}", *command, cwd=work, timeout=timeout)


def test_a_soname_cannot_make_root_place_a_link_on_the_host(sandbox, work):
    victim = Path("/tmp") / f"hpcctl-soname-{uuid.uuid4().hex[:8]}"
    image = build(work, "soname", lambda tree: shared_object(tree / "lib/libhostile.so.1",
                                                             f"../proc/1/root{victim}"))
    result = run_in(sandbox, work, image, "true")
    assert not os.path.lexists(victim), f"root made {victim} -> {os.readlink(victim)}"
    assert result.returncode == 0, result.stderr
    assert settled(image) == []


def test_an_etc_link_into_proc_cannot_make_root_write_the_linker_cache_on_the_host(sandbox, work, root_only_dir):
    def shape(tree: Path) -> None:
        for name in ("passwd", "group"):
            (tree / "etc" / name).unlink()
        (tree / "etc").rmdir()
        os.symlink(f"/proc/1/root{root_only_dir}", tree / "etc")

    image = build(work, "etc-link", shape)
    result = run_in(sandbox, work, image, "true")
    assert list(root_only_dir.iterdir()) == [], result.stderr
    assert settled(image) == []


def _fifo_conf(tree: Path) -> None:
    os.mkfifo(tree / "etc/ld.so.conf")


def _fifo_include(tree: Path) -> None:
    (tree / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (tree / "etc/ld.so.conf.d").mkdir()
    os.mkfifo(tree / "etc/ld.so.conf.d/blocked.conf")


def _zero_conf(tree: Path) -> None:
    os.symlink("/dev/zero", tree / "etc/ld.so.conf")


def _fifo_passwd(tree: Path) -> None:
    (tree / "etc/passwd").unlink()
    os.mkfifo(tree / "etc/passwd")
    (tree / "etc/group").unlink()
    os.symlink("/dev/zero", tree / "etc/group")


def _fifo_library(tree: Path) -> None:
    os.mkfifo(tree / "lib/libblocked.so.1")


@pytest.mark.parametrize("shape", [_fifo_conf, _fifo_include, _zero_conf, _fifo_passwd, _fifo_library],
                         ids=["ld.so.conf-fifo", "include-fifo", "ld.so.conf-dev-zero", "passwd-fifo",
                              "library-fifo"])
def test_image_files_that_block_or_never_end_are_bounded(sandbox, work, shape):
    """Files root used to read or hand to ldconfig as root: the step ends (runs, or fails with one line) within
    its bound, and nothing of root's stays behind."""
    image = build(work, shape.__name__.strip("_"), shape)
    started = time.monotonic()
    result = run_in(sandbox, work, image, "id", "-un")
    took = time.monotonic() - started
    assert took < 100, f"the step took {took:.0f} s"
    if result.returncode == 0:
        assert result.stdout.strip() == sandbox.user
    else:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "hpcctl: error:" in lines[0], result.stderr
    assert settled(image) == []


def test_a_cancelled_step_leaves_no_root_process_loop_device_or_mount(sandbox, work):
    image = build(work, "cancelled", _fifo_library)
    proc = subprocess.Popen(["runuser", "-u", sandbox.user, "--", "srun", "--job-name=sec-cancel",
                             f"--container-image={image}", "true"], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    time.sleep(3)
    subprocess.run(["scancel", "--name=sec-cancel", f"--user={sandbox.user}"], check=False)
    proc.wait(timeout=100)
    assert settled(image, 30) == []
