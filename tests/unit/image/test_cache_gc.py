"""Cache listing, LRU garbage collection and the in-use lock that protects images of running jobs."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import namedtuple

import pytest
from fake_registry import SMALL, push
from image_layers import e

from hpcctl.errors import HpcctlError
from hpcctl.image import api, gc
from hpcctl.image.cache import ImageCache
from hpcctl.image.errors import NoSpace, NotFound


def pull_three(reg, site):
    images = []
    for name in ("a", "b", "c"):
        push(reg, f"test/{name}", "v1", SMALL + [[e(f"{name}.txt", data=name.encode() * 1000)]])
        images.append(api.ensure(f"{reg.host}/test/{name}:v1", site))
        time.sleep(0.01)
    return images


def test_gc_removes_least_recently_used_first_and_never_an_image_in_use(fake_registry, site):
    a, b, c = pull_three(fake_registry, site)
    cache = ImageCache(site.cache.root)
    api.ensure(f"{fake_registry.host}/test/a:v1", site)  # a is now the most recently used
    with api.in_use(b):
        result = gc.collect(cache, target=0)
        assert [r["reference"] for r in result.removed] == [c.reference, a.reference]
        assert result.in_use == [b.reference]
        assert [entry.meta["reference"] for entry in cache.entries()] == [b.reference]
    assert os.path.exists(b.path)
    needed = set(cache.entries()[0].meta["layers"])
    assert {f"sha256:{p.name}" for p in cache.blob_files()} == needed


def test_gc_down_to_a_target_keeps_what_fits(fake_registry, site):
    a, b, c = pull_three(fake_registry, site)
    cache = ImageCache(site.cache.root)
    result = gc.collect(cache, target=cache.disk_usage() - 1, dry_run=True)
    assert [r["reference"] for r in result.removed] == [a.reference]
    assert len(cache.entries()) == 3


def test_rm_refuses_an_image_in_use(fake_registry, site):
    image = api.ensure(f"{fake_registry.host}/test/small:v1", site)
    cache = ImageCache(site.cache.root)
    with api.in_use(image):
        with pytest.raises(HpcctlError, match="in use"):
            gc.remove(cache, cache.lookup(image.digest))
    gc.remove(cache, cache.lookup(image.digest))
    assert cache.entries() == [] and cache.blob_files() == []


def test_marking_an_image_removed_meanwhile_says_pull_again(fake_registry, site):
    image = api.ensure(f"{fake_registry.host}/test/small:v1", site)
    gc.collect(ImageCache(site.cache.root), target=0)
    with pytest.raises(NotFound, match="removed from the cache"):
        api.mark_in_use(image)


def test_ls_entries_have_reference_digest_size_and_last_use(fake_registry, site):
    image = api.ensure(f"{fake_registry.host}/test/small:v1", site)
    (entry,) = ImageCache(site.cache.root).entries()
    assert (entry.meta["reference"], entry.digest, entry.size) == (image.reference, image.digest, image.size)
    assert abs(entry.last_used - time.time()) < 60


def test_a_pull_past_the_high_watermark_collects_down_to_the_low_one(fake_registry, site):
    import dataclasses
    a, b, c = pull_three(fake_registry, site)
    small = dataclasses.replace(site, cache=dataclasses.replace(site.cache, high_watermark=1, low_watermark=0))
    fresh = api.ensure(f"{fake_registry.host}/test/small:v1", small)
    assert [e.meta["reference"] for e in ImageCache(site.cache.root).entries()] == [fresh.reference]
    assert os.path.exists(fresh.path)


def test_gc_sweeps_what_killed_pulls_left_but_not_while_a_pull_runs(fake_registry, site):
    image = api.ensure(f"{fake_registry.host}/test/small:v1", site)
    cache = ImageCache(site.cache.root)
    orphan = cache.images / ("e" * 64 + ".sqsh")
    orphan.write_bytes(b"renamed but metadata never written")
    partial = cache.tmp / ("f" * 64 + ".999.sqsh")
    partial.write_bytes(b"half")
    with cache.pull_lock("sha256:" + "f" * 64):  # a pull is running: nothing is swept
        gc.collect(cache, target=1 << 40)
        assert orphan.exists() and partial.exists()
    gc.collect(cache, target=1 << 40)
    assert not orphan.exists() and not partial.exists() and os.path.exists(image.path)


def claiming(reg, repo: str, tag: str, layer_size: int) -> str:
    """A tag whose manifest is repo:tag's with its first layer declaring ``layer_size`` bytes (the registry serves
    the same small blob): what anyone may push to an open registry."""
    _, body = reg.manifests[(repo, tag)]
    manifest = json.loads(body)
    manifest["layers"][0]["size"] = layer_size
    reg.add_manifest(repo, "claims", manifest, manifest["mediaType"])
    return f"{reg.host}/{repo}:claims"


def with_low_watermark(site, low: int):
    return dataclasses.replace(site, cache=dataclasses.replace(site.cache, low_watermark=low))


def free_space_until_an_image_goes(mocker, cache: ImageCache, free: int) -> None:
    """The cache's disk has ``free`` bytes free until gc removes an image, then plenty."""
    usage = namedtuple("usage", "total used free")
    count = len(cache.entries())
    mocker.patch("hpcctl.image.pull.shutil.disk_usage",
                 side_effect=lambda path: usage(1 << 40, 0, free if len(cache.entries()) == count else 1 << 40))


def test_a_manifest_claiming_a_huge_layer_evicts_nothing(fake_registry, site):
    pulled = pull_three(fake_registry, site)
    huge = claiming(fake_registry, "test/small", "v1", 10 << 40)
    with pytest.raises(NoSpace) as info:
        api.ensure(huge, site)
    assert "\n" not in str(info.value) and "its manifest says it needs about" in str(info.value)
    cache = ImageCache(site.cache.root)
    assert sorted(e.meta["reference"] for e in cache.entries()) == sorted(i.reference for i in pulled)


def test_making_room_for_a_pull_stops_at_the_low_watermark(fake_registry, site, mocker):
    pull_three(fake_registry, site)
    cache = ImageCache(site.cache.root)
    free_space_until_an_image_goes(mocker, cache, 0)
    with pytest.raises(NoSpace):
        api.ensure(f"{fake_registry.host}/test/small:v1", with_low_watermark(site, cache.disk_usage()))
    assert len(cache.entries()) == 3


def test_making_room_for_a_pull_removes_the_least_recently_used_image_first(fake_registry, site, mocker):
    a, b, c = pull_three(fake_registry, site)
    cache = ImageCache(site.cache.root)
    free_space_until_an_image_goes(mocker, cache, 0)
    fresh = api.ensure(f"{fake_registry.host}/test/small:v1", with_low_watermark(site, 0))
    assert sorted(e.meta["reference"] for e in cache.entries()) == sorted([b.reference, c.reference,
                                                                           fresh.reference])


def test_usage_is_what_the_cache_files_take_on_disk(fake_registry, site):
    pull_three(fake_registry, site)
    cache = ImageCache(site.cache.root)
    files = [*cache.images.iterdir(), *cache.blob_files()]
    assert cache.disk_usage() == sum(os.stat(p).st_blocks * 512 for p in files)
    assert [e.size for e in cache.entries()] == [os.stat(e.sqsh).st_size for e in cache.entries()]
