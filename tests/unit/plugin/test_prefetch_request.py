"""The prolog's prefetch request is the user's to shape (the job control environment): only a registry reference
pinned to a digest is fetched, on a node of this host."""

from __future__ import annotations

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.plugin import prefetch
from hpcctl.site.config import SiteConfig

SITE = SiteConfig(path="", cluster="test")


@pytest.mark.parametrize("pin", ["", "img", "img /etc/shadow", "img ./image.sqsh", "img dockerd://abc",
                                 "img 127.0.0.1:5000/hpcctl/busybox:latest"])
def test_anything_but_a_digest_pinned_registry_reference_is_skipped(pin):
    reply = prefetch.handle({"jobid": 1, "uid": 2001, "gid": 2001, "node": "n1", "pin": pin}, SITE)
    assert "skipped" in reply


def test_a_node_that_is_not_this_hosts_is_refused():
    pin = "img 127.0.0.1:5000/hpcctl/busybox@sha256:" + "a" * 64
    with pytest.raises(HpcctlError, match="node evil is not a Slurm node of this host"):
        prefetch.handle({"jobid": 1, "uid": 2001, "gid": 2001, "node": "evil", "pin": pin}, SITE)
