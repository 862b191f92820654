"""A cache disk that really fills up (a small tmpfs): a one-line error and nothing that looks valid."""

from __future__ import annotations

import dataclasses
import subprocess
from collections import namedtuple

import pytest
from image_site import ImageSite

from hpcctl.image import api
from hpcctl.image.cache import ImageCache
from hpcctl.image.errors import NoSpace
from hpcctl.site.config import load_site

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(sandbox, tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_checked_before_the_pull(sandbox, small_disk):
    site = load_site(ImageSite().file)
    site = dataclasses.replace(site, cache=dataclasses.replace(site.cache, root=str(small_disk / "cache")))
    with pytest.raises(NoSpace, match="needs about .* free after removing unused images"):
        api.ensure(f"{sandbox.registry}/hpcctl/debian:bookworm", site)
    assert ImageCache(small_disk / "cache").entries() == []


def test_disk_filling_up_during_the_pull(sandbox, small_disk, mocker):
    usage = namedtuple("usage", "total used free")
    mocker.patch("hpcctl.image.pull.shutil.disk_usage", return_value=usage(1 << 40, 0, 1 << 40))  # it lies
    site = load_site(ImageSite().file)
    site = dataclasses.replace(site, cache=dataclasses.replace(site.cache, root=str(small_disk / "cache")))
    with pytest.raises(NoSpace) as info:
        api.ensure(f"{sandbox.registry}/hpcctl/debian:bookworm", site)
    assert "no space left" in str(info.value) and "\n" not in str(info.value)
    cache = ImageCache(small_disk / "cache")
    assert cache.entries() == [] and list(cache.tmp.iterdir()) == []
