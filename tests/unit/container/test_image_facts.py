"""Facts read from inside an image: as the job's user, in a confined child, never following the image's links out
of its tree, never blocking on its FIFOs."""

import os
import subprocess
import time

import pytest

from hpcctl.container import confined, image_facts
from hpcctl.container.access import Identity
from hpcctl.container.image_facts import collect
from hpcctl.errors import HpcctlError

NOBODY = Identity(65534, 65534)


def tree(root):
    (root / "etc").mkdir(parents=True)
    (root / "lib").mkdir()
    return root


def test_links_resolve_inside_the_tree(tmp_path):
    root = tree(tmp_path / "root")
    (root / "etc/passwd").symlink_to("/etc/shadow")  # the host's, were it followed
    (root / "etc/group").symlink_to("../../../../../etc/group")  # stays at the tree's top
    facts = collect(str(root), [], "/sbin/ldconfig")
    assert facts["passwd"] == "" and facts["group"] == ""


def test_fifos_and_devices_are_not_read(tmp_path):
    root = tree(tmp_path / "root")
    os.mkfifo(root / "etc/passwd")
    (root / "etc/group").symlink_to("/dev/zero")
    os.mkfifo(root / "etc/ld.so.conf")
    started = time.monotonic()
    facts = collect(str(root), [], "/sbin/ldconfig")
    assert time.monotonic() - started < 5
    assert facts["passwd"] == "" and facts["ld_dirs"] == []


def test_ld_so_conf_includes_are_followed_inside_the_tree(tmp_path):
    root = tree(tmp_path / "root")
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n/opt/a/lib # comment\n")
    (root / "etc/ld.so.conf.d").mkdir()
    (root / "etc/ld.so.conf.d/b.conf").write_text("/opt/b/lib\ninclude b.conf\n")  # includes itself
    os.mkfifo(root / "etc/ld.so.conf.d/c.conf")
    dirs = collect(str(root), [], "/sbin/ldconfig")["ld_dirs"]
    assert dirs[:2] == ["/opt/a/lib", "/opt/b/lib"] and set(dirs) == {"/opt/a/lib", "/opt/b/lib"}


def test_a_directory_image_is_read_as_the_given_user(tmp_path):
    root = tree(tmp_path / "root")
    (root / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (root / "etc/group").write_text("secret:x:1:\n")
    (root / "etc/group").chmod(0o600)
    tmp_path.chmod(0o755)
    facts = image_facts.read(str(root), NOBODY, [], "/sbin/ldconfig", str(tmp_path / "scratch"))
    assert facts.passwd == "root:x:0:0::/:/bin/sh\n"
    assert facts.group == ""  # root's file: nobody cannot read it


def test_a_confined_child_that_overruns_is_stopped():
    started = time.monotonic()
    with pytest.raises(HpcctlError, match="took longer than 1 s"):
        confined.run(lambda: time.sleep(30), NOBODY, "a slow image", seconds=1)
    assert time.monotonic() - started < 5


def test_a_confined_child_runs_as_the_user():
    assert confined.run(os.getuid, NOBODY, "uid") == (65534 if os.geteuid() == 0 else os.getuid())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a squashfs privately needs root")
def test_a_squashfs_is_mounted_privately_and_leaves_nothing(tmp_path):
    root = tree(tmp_path / "root")
    (root / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    image = tmp_path / "image.sqsh"
    subprocess.run(["mksquashfs", str(root), str(image), "-quiet", "-noappend"], check=True)
    facts = image_facts.read(str(image), NOBODY, [], "/sbin/ldconfig", str(tmp_path / "scratch" / "inspect"))
    assert facts.passwd == "root:x:0:0::/:/bin/sh\n"
    assert subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True).stdout == ""
    assert str(image) not in open("/proc/self/mountinfo").read()
