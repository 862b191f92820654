"""Site policy on user mounts: denied prefixes, also when reached through a symlink."""

import pytest

from hpcctl.container.policy import check_source
from hpcctl.errors import HpcctlError
from hpcctl.site.config import UserMountPolicy


def test_denied_prefix_and_symlink(tmp_path):
    policy = UserMountPolicy(deny_prefixes=("/etc",))
    link = tmp_path / "conf"
    link.symlink_to("/etc")
    with pytest.raises(HpcctlError, match="under /etc"):
        check_source("/etc/passwd", policy)
    with pytest.raises(HpcctlError, match=r"\(= /etc\) is under /etc"):
        check_source(str(link), policy)
    assert check_source(str(tmp_path), policy) == str(tmp_path)
    assert check_source("/etcetera", policy) == "/etcetera"


def test_mounts_switched_off():
    with pytest.raises(HpcctlError, match="does not allow user mounts"):
        check_source("/tmp", UserMountPolicy(allow=False))
