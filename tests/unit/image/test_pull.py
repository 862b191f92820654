"""ensure()/resolve() against a fake registry: cold and warm paths, request counts, failures and recovery."""

from __future__ import annotations

import json
import os
import subprocess
from collections import namedtuple

import pytest
from fake_registry import SMALL, push
from image_layers import e

from hpcctl.image import api
from hpcctl.image.cache import ImageCache
from hpcctl.image.errors import AuthDenied, DigestMismatch, NoSpace, NotFound, RegistryError, RegistryUnreachable


def ref(reg, repo="test/small", tag="v1"):
    return f"{reg.host}/{repo}:{tag}"


def listing(path) -> str:
    return subprocess.run(["unsquashfs", "-lln", path], capture_output=True, text=True, check=True).stdout


def test_cold_pull_makes_a_squashfs_of_the_merged_layers(fake_registry, site):
    image = api.ensure(ref(fake_registry), site)
    assert image.digest == fake_registry.small_digest
    assert image.reference == ref(fake_registry)
    assert image.config.env == ("PATH=/bin",) and image.config.cmd == ("/bin/sh",)
    files = listing(image.path)
    assert "squashfs-root/etc/os-release" in files and "squashfs-root/etc/motd" not in files
    assert oct(os.stat(image.path).st_mode & 0o777) == "0o644"
    assert image.lock_path and os.path.exists(image.lock_path)


def test_warm_hit_costs_one_manifest_request_and_a_pinned_reference_none(fake_registry, site):
    api.ensure(ref(fake_registry), site)
    fake_registry.log.clear()
    api.ensure(ref(fake_registry), site)
    assert fake_registry.log == [("HEAD", "/v2/test/small/manifests/v1")]
    fake_registry.log.clear()
    pinned = api.resolve(ref(fake_registry), site).pinned
    fake_registry.log.clear()
    assert api.ensure(pinned, site).digest == fake_registry.small_digest
    assert api.resolve(pinned, site).digest == fake_registry.small_digest
    assert fake_registry.log == []


def test_resolve_pins_the_tag(fake_registry, site):
    resolved = api.resolve(ref(fake_registry), site)
    assert resolved.digest == fake_registry.small_digest
    assert resolved.pinned == f"{ref(fake_registry)}@{fake_registry.small_digest}"
    assert len(fake_registry.log) == 1


def test_retries_on_5xx_and_429(fake_registry, site):
    fake_registry.fail_next = [503, 429, 502]
    assert api.ensure(ref(fake_registry), site).digest == fake_registry.small_digest


def test_gives_up_after_the_configured_retries(fake_registry, site):
    fake_registry.fail_next = [503] * 10
    with pytest.raises(RegistryError, match="HTTP 503"):
        api.ensure(ref(fake_registry), site)


def test_a_reset_mid_blob_resumes_with_a_range_request(fake_registry, site):
    big = os.urandom(300_000)
    push(fake_registry, "test/big", "v1", [[e("blob.bin", data=big)]])
    fake_registry.reset_blob_after = 1000
    image = api.ensure(ref(fake_registry, "test/big"), site)
    assert "squashfs-root/blob.bin" in listing(image.path)


def test_a_corrupted_blob_is_refused_and_nothing_is_cached(fake_registry, site):
    layer_digest = json.loads(fake_registry.manifests[("test/small", "v1")][1])["layers"][0]["digest"]
    fake_registry.corrupt.add(layer_digest)
    with pytest.raises(DigestMismatch, match="hashing to"):
        api.ensure(ref(fake_registry), site)
    cache = ImageCache(site.cache.root)
    assert cache.entries() == [] and list(cache.tmp.iterdir()) == []


def test_unknown_tag_and_unreachable_registry(fake_registry, site):
    with pytest.raises(NotFound, match="not found in registry"):
        api.ensure(ref(fake_registry, tag="nope"), site)
    with pytest.raises(RegistryUnreachable, match="cannot reach registry 127.0.0.1:1"):
        api.ensure("127.0.0.1:1/x/y:z", site)


def test_bearer_auth_with_the_users_netrc(fake_registry, site, tmp_path):
    fake_registry.auth = "bearer"
    with pytest.raises(AuthDenied, match="needs credentials"):
        api.ensure(ref(fake_registry), site)
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host.split(':')[0]} login alice password wrong\n")
    with pytest.raises(AuthDenied, match="refused the credentials of 'alice'"):
        api.ensure(ref(fake_registry), site)
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host} login alice password secret\n")
    image = api.ensure(ref(fake_registry), site)
    assert json.loads(open(image.path[:-5] + ".json").read())["auth_required"] is True


def test_a_cached_private_image_still_needs_the_users_own_credentials(fake_registry, site, tmp_path):
    fake_registry.auth = "basic"
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host} login alice password secret\n")
    pinned = api.resolve(ref(fake_registry), site).pinned
    api.ensure(pinned, site)
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host} login alice password stolen-cache-hope\n")
    with pytest.raises(AuthDenied):
        api.ensure(pinned, site)


def test_manifest_list_picks_this_hosts_platform(fake_registry, site, monkeypatch):
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": fake_registry.small_digest,
         "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}]}
    index_digest = fake_registry.add_manifest("test/small", "multi", index, index["mediaType"])
    monkeypatch.setattr("hpcctl.image.registry.host_platform", lambda: ("linux", "amd64"))
    image = api.ensure(ref(fake_registry, tag="multi"), site)
    assert image.digest == index_digest
    assert "squashfs-root/etc/os-release" in listing(image.path)
    monkeypatch.setattr("hpcctl.image.registry.host_platform", lambda: ("linux", "riscv64"))
    with pytest.raises(NotFound, match="no image for linux/riscv64"):
        api.ensure(f"{ref(fake_registry, tag='multi')}@{index_digest}".replace(":multi@", "@"), site.__class__(
            **{**site.__dict__, "cache": site.cache.__class__(root=site.cache.root + "2")}))


def test_full_disk_is_a_one_line_error_and_leaves_nothing(fake_registry, site, mocker):
    usage = namedtuple("usage", "total used free")
    mocker.patch("hpcctl.image.pull.shutil.disk_usage", return_value=usage(10 << 30, 10 << 30, 16))
    with pytest.raises(NoSpace) as info:
        api.ensure(ref(fake_registry), site)
    assert "no space left" in str(info.value) and "\n" not in str(info.value)
    assert ImageCache(site.cache.root).entries() == []


def test_a_killed_pull_leaves_nothing_valid_and_the_next_pull_recovers(fake_registry, site):
    digest = fake_registry.small_digest
    cache = ImageCache(site.cache.root)
    cache.prepare()
    (cache.tmp / f"{digest[7:]}.12345.sqsh").write_bytes(b"half written")  # killed while converting
    cache.sqsh_path(digest).write_bytes(b"renamed, metadata never written")  # killed just before metadata
    assert cache.lookup(digest) is None
    image = api.ensure(ref(fake_registry), site)
    assert listing(image.path)
    assert list(cache.tmp.iterdir()) == []


def test_metadata_with_the_wrong_size_is_not_a_valid_entry(fake_registry, site):
    image = api.ensure(ref(fake_registry), site)
    with open(image.path, "ab") as fh:
        fh.write(b"x")
    assert ImageCache(site.cache.root).lookup(image.digest) is None


def test_local_squashfs_is_used_in_place(fake_registry, site, tmp_path):
    image = api.ensure(ref(fake_registry), site)
    local = tmp_path / "copy.sqsh"
    local.write_bytes(open(image.path, "rb").read())
    found = api.ensure(str(local), site)
    assert found.path == str(local) and found.lock_path is None and found.config.env == ()
    with pytest.raises(NotFound, match="does not exist"):
        api.ensure(str(tmp_path / "missing.sqsh"), site)
    (tmp_path / "text.sqsh").write_text("not squashfs")
    with pytest.raises(Exception, match="not a squashfs image"):
        api.ensure(str(tmp_path / "text.sqsh"), site)


def test_crafted_image_is_refused_end_to_end(fake_registry, site):
    from image_layers import CRAFTED
    push(fake_registry, "test/evil", "v1", CRAFTED["symlink-then-write-through"].layers)
    with pytest.raises(Exception, match="made a link"):
        api.ensure(ref(fake_registry, "test/evil"), site)
    assert ImageCache(site.cache.root).entries() == []


def test_mirrors_are_tried_first_and_a_dead_mirror_falls_back_to_the_registry(fake_registry, site):
    import dataclasses

    from fake_registry import FakeRegistry
    mirror = FakeRegistry().start()
    try:
        push(mirror, "library/tool", "v1", SMALL)
        mirrored = dataclasses.replace(site, registries=dataclasses.replace(
            site.registries, insecure=(fake_registry.host, mirror.host, "127.0.0.1:1"),
            mirrors={"docker.io": [mirror.host], fake_registry.host: ["127.0.0.1:1"]}, retries=0))
        image = api.ensure("tool:v1", mirrored)
        assert image.reference == "docker.io/library/tool:v1" and mirror.count("blobs") == 3
        assert api.ensure(ref(fake_registry), mirrored).digest == fake_registry.small_digest
    finally:
        mirror.stop()
