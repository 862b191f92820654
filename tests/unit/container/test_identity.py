"""The user's entries in the container's /etc/passwd and /etc/group."""

import grp
import os
import pwd

from hpcctl.container.identity import group_text, identity_mounts, passwd_text
from hpcctl.container.image_facts import ImageFacts

USER = pwd.struct_passwd(("alice", "x", 2001, 2001, "Alice", "/home/alice", "/bin/bash"))


def test_passwd_keeps_the_image_users_and_replaces_clashes():
    image = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\nbob:x:2001:2001::/:/bin/sh\n\n"
    assert passwd_text(image, USER) == ("root:x:0:0:root:/root:/bin/sh\n"
                                        "alice:x:2001:2001:Alice:/home/alice:/bin/bash\n")


def test_an_image_without_root_gets_one():
    assert passwd_text("", USER) == ("root:x:0:0:root:/root:/bin/sh\n"
                                     "alice:x:2001:2001:Alice:/home/alice:/bin/bash\n")


def test_group_adds_the_user_to_existing_gids_and_adds_missing_ones():
    root_group = grp.getgrgid(0).gr_name
    image = f"{root_group}:x:0:\nvideo:x:44:bob\n"
    assert group_text(image, "alice", [44, 0, 44, 999999]) == f"{root_group}:x:0:alice\nvideo:x:44:bob,alice\n"
    assert group_text("", "alice", [0]) == f"{root_group}:x:0:alice\n"


def test_root_gets_the_image_files_unchanged(tmp_path):
    assert identity_mounts(ImageFacts(), 0, 0, (), str(tmp_path / "out")) == []
    me = os.getuid() if os.getuid() else pwd.getpwnam("nobody").pw_uid
    mounts = identity_mounts(ImageFacts(), me, 0, (), str(tmp_path / "out"))
    assert [(m.target, m.readonly) for m in mounts] == [("/etc/passwd", True), ("/etc/group", True)]
    assert pwd.getpwuid(me).pw_name in open(mounts[0].source).read()


def test_published_files_are_never_replaced(tmp_path):
    """Steps starting together get the same files, and none is swapped under another's mount."""
    me = pwd.getpwnam("nobody").pw_uid
    first = identity_mounts(ImageFacts(passwd="a:x:5:5::/:/bin/sh\n"), me, 0, (), str(tmp_path))
    inode = os.stat(first[0].source).st_ino
    again = identity_mounts(ImageFacts(passwd="a:x:5:5::/:/bin/sh\n"), me, 0, (), str(tmp_path))
    assert again == first and os.stat(first[0].source).st_ino == inode
    other = identity_mounts(ImageFacts(passwd="b:x:6:6::/:/bin/sh\n"), me, 0, (), str(tmp_path))
    assert other[0].source != first[0].source
