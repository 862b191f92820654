"""The registry client against a fake registry: layer compressions, manifest kinds, auth forms, plain HTTP only where
the site allows it, timeouts, retries with backoff, and private images in a shared cache."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import time

import pytest
from fake_registry import DOCKER_MANIFEST, SMALL, digest_of, push
from image_layers import e

from hpcctl.image import api
from hpcctl.image.cache import ImageCache
from hpcctl.image.errors import AuthDenied, DigestMismatch, RegistryError, RegistryUnreachable
from hpcctl.image.reference import parse
from hpcctl.image.registry import Registry, RegistryConfigView, _backoff


def listing(path) -> str:
    return subprocess.run(["unsquashfs", "-lln", path], capture_output=True, text=True, check=True).stdout


def with_registries(site, **changes):
    return dataclasses.replace(site, registries=dataclasses.replace(site.registries, **changes))


def test_gzip_zstd_and_uncompressed_layers(fake_registry, site):
    layers = [[e("gz", "dir"), e("gz/a", data=b"gzip")], [e("zst", "dir"), e("zst/b", data=b"zstd")],
              [e("raw", "dir"), e("raw/c", data=b"plain"), e("gz/.wh.a")]]
    push(fake_registry, "test/mixed", "v1", layers, compressions=("gzip", "zstd", "none"))
    files = listing(api.ensure(f"{fake_registry.host}/test/mixed:v1", site).path)
    assert "squashfs-root/zst/b" in files and "squashfs-root/raw/c" in files and "squashfs-root/gz/a" not in files


def test_docker_v2_manifest_and_docker_manifest_list(fake_registry, site, monkeypatch):
    digest = push(fake_registry, "test/docker", "single", SMALL, docker=True)
    assert api.ensure(f"{fake_registry.host}/test/docker:single", site).digest == digest
    listed = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
              "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1,
                             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                            {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": 1,
                             "platform": {"os": "linux", "architecture": "amd64"}}]}
    list_digest = fake_registry.add_manifest("test/docker", "multi", listed, listed["mediaType"])
    monkeypatch.setattr("hpcctl.image.registry.host_platform", lambda: ("linux", "amd64"))
    image = api.ensure(f"{fake_registry.host}/test/docker:multi", site)
    assert image.digest == list_digest and "squashfs-root/etc/os-release" in listing(image.path)


def test_anonymous_token_auth_as_docker_hub_does(fake_registry, site):
    fake_registry.auth = "bearer-anonymous"
    assert api.ensure(f"{fake_registry.host}/test/small:v1", site).digest == fake_registry.small_digest
    assert ("GET", "/token?scope=repository%3Atest%2Fsmall%3Apull&service=fake") in fake_registry.log


def test_ngc_oauthtoken_login_from_the_netrc(fake_registry, site, tmp_path):
    fake_registry.auth, fake_registry.user, fake_registry.password = "bearer", "$oauthtoken", "nvapi-key"
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host} login alice password other\n"
                                    f"machine {fake_registry.host} login $oauthtoken password nvapi-key\n")
    image = api.ensure(f"$oauthtoken@{fake_registry.host}#test/small:v1", site)
    assert image.digest == fake_registry.small_digest


def test_docker_credential_helper_through_the_docker_sdk(fake_registry, site, tmp_path, monkeypatch):
    fake_registry.auth = "basic"
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    (home / ".docker").mkdir(parents=True)
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-hpcfake"
    helper.write_text('#!/bin/sh\nread server\necho "{\\"ServerURL\\": \\"$server\\", \\"Username\\": \\"alice\\", '
                      '\\"Secret\\": \\"secret\\"}"\n')
    helper.chmod(0o755)
    (home / ".docker/config.json").write_text(json.dumps({"credHelpers": {fake_registry.host: "hpcfake"}}))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    image = api.ensure(f"{fake_registry.host}/test/small:v1", with_registries(site, docker_config=True))
    assert image.digest == fake_registry.small_digest
    (home / ".docker/config.json").write_text(json.dumps({"credsStore": "hpcfake"}))
    assert api.resolve(f"{fake_registry.host}/test/small:v1", with_registries(site, docker_config=True)).digest


def test_plain_http_only_for_hosts_the_site_lists_as_insecure(fake_registry, site):
    strict = with_registries(site, insecure=(), retries=0)
    with pytest.raises(RegistryUnreachable) as info:
        api.ensure(f"{fake_registry.host}/test/small:v1", strict)
    assert str(info.value) == (f"cannot reach registry {fake_registry.host}: TLS handshake failed (list it under "
                               "registries.insecure in the site config if it serves plain HTTP; otherwise check its "
                               "certificate)")
    assert fake_registry.log == []


def test_a_registry_that_does_not_answer_times_out(fake_registry, site):
    fake_registry.stall_s = 3
    start = time.monotonic()
    with pytest.raises(RegistryUnreachable, match="timed out"):
        api.ensure(f"{fake_registry.host}/test/small:v1", with_registries(site, timeout_s=0.3, retries=1))
    assert time.monotonic() - start < 2


def test_connection_resets_are_retried_after_a_backoff(fake_registry, site):
    sleeps = []
    fake_registry.fail_next = ["reset", 503, 429]
    registry = Registry(parse(f"{fake_registry.host}/test/small:v1"), RegistryConfigView(
        insecure=(fake_registry.host,), timeout_s=5, retries=3), sleep=sleeps.append)
    assert registry.head_digest("v1") == fake_registry.small_digest
    assert len(sleeps) == 3 and registry.requests == 4


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after():
    for attempt, (low, high) in enumerate([(0.25, 0.5), (0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)]):
        assert all(low <= _backoff(attempt, None) <= high for _ in range(20))
    assert _backoff(0, "7") == 7 and _backoff(0, "3600") == 60


def test_a_warm_hit_takes_no_lock(fake_registry, site):
    image = api.ensure(f"{fake_registry.host}/test/small:v1", site)
    cache = ImageCache(site.cache.root)
    done = []
    with cache.pull_lock(image.digest):  # a pull of the same image holds its lock
        worker = threading.Thread(target=lambda: done.append(api.ensure(f"{fake_registry.host}/test/small:v1",
                                                                         site)))
        worker.start()
        worker.join(timeout=10)
    assert done and done[0].path == image.path


def test_another_user_without_credentials_does_not_get_the_cached_private_image(fake_registry, site, tmp_path):
    fake_registry.auth = "basic"
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host} login alice password secret\n")
    pinned = api.resolve(f"{fake_registry.host}/test/small:v1", site).pinned
    api.ensure(pinned, site)
    (tmp_path / "netrc").unlink()  # the next user has no credentials for this registry
    for wanted in (pinned, f"{fake_registry.host}/test/small:v1"):
        with pytest.raises(AuthDenied, match="needs credentials for test/small and none were found"):
            api.ensure(wanted, site)
    assert len(ImageCache(site.cache.root).entries()) == 1


def test_layers_are_stored_by_digest_and_shared_between_images(fake_registry, site):
    api.ensure(f"{fake_registry.host}/test/small:v1", site)
    push(fake_registry, "test/derived", "v1", SMALL + [[e("app", data=b"app")]])
    fake_registry.log.clear()
    api.ensure(f"{fake_registry.host}/test/derived:v1", site)
    fetched = [path for _, path in fake_registry.log if "/blobs/" in path]
    assert len(fetched) == 2  # its config and its own top layer; the two layers of test/small are in the store
    cache = ImageCache(site.cache.root)
    assert sorted(p.name for p in cache.blob_files()) == sorted(
        {d[7:] for entry in cache.entries() for d in entry.meta["layers"]})


def test_a_stored_layer_damaged_on_disk_is_caught_and_downloaded_again(fake_registry, site):
    image = api.ensure(f"{fake_registry.host}/test/small:v1", site)
    cache = ImageCache(site.cache.root)
    blob = cache.blob_files()[0]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    cache.remove(cache.lookup(image.digest))
    with pytest.raises(DigestMismatch, match=r"stored layer sha256:\w+ now hashes to sha256:\w+; it was removed"):
        api.ensure(f"{fake_registry.host}/test/small:v1", site)
    assert not blob.exists() and cache.entries() == []
    assert api.ensure(f"{fake_registry.host}/test/small:v1", site).digest == image.digest


def test_a_private_images_files_are_readable_by_root_only(fake_registry, site, tmp_path):
    public = api.ensure(f"{fake_registry.host}/test/small:v1", site)
    push(fake_registry, "test/private", "v1", [[e("secret", data=b"private data")]])
    fake_registry.auth = "basic"
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host} login alice password secret\n")
    private = api.ensure(f"{fake_registry.host}/test/private:v1", site)
    assert (os.stat(public.path).st_mode & 0o777, os.stat(private.path).st_mode & 0o777) == (0o644, 0o600)
    store = ImageCache(site.cache.root)
    modes = {p.name: p.stat().st_mode & 0o777 for p in store.blob_files()}
    layers = {entry.meta["reference"]: entry.meta["layers"] for entry in store.entries()}
    assert [modes[d[7:]] for d in layers[private.reference]] == [0o600]
    assert {modes[d[7:]] for d in layers[public.reference]} == {0o644}


def test_a_registry_claiming_a_cached_private_digest_does_not_unlock_it(fake_registry, site, tmp_path):
    """The digests of cached images are no secret (`hpcctl image ls`): an open registry that merely claims a private
    image's digest (serves its manifest, not its layers) must not hand the cached copy to a user the private
    registry never accepted. One that serves every blob of it holds the image anyway: the same image public
    elsewhere is handed out."""
    from fake_registry import FakeRegistry
    layers = [[e("secret", data=b"private data")]]
    digest = push(fake_registry, "corp/private", "v1", layers)
    fake_registry.auth = "basic"
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host} login alice password secret\n")
    api.ensure(f"{fake_registry.host}/corp/private:v1", site)
    (tmp_path / "netrc").unlink()
    evil = FakeRegistry().start()
    try:
        assert push(evil, "corp/private", "v1", layers) == digest
        claimed = with_registries(site, insecure=(fake_registry.host, evil.host))
        layer_blobs = dict(evil.blobs)
        evil.blobs.clear()  # the manifest is there, the layers are not: a claim
        for wanted in (f"{evil.host}/corp/private:v1", f"{evil.host}/other/name@{digest}"):
            with pytest.raises(AuthDenied, match=f"registry {fake_registry.host} needs credentials for corp/private"):
                api.ensure(wanted, claimed)
        evil.blobs.update(layer_blobs)  # now it serves the image itself: a public copy
        assert api.ensure(f"{evil.host}/corp/private:v1", claimed).digest == digest
    finally:
        evil.stop()


def test_a_huge_manifest_is_refused_without_being_read(fake_registry, site):
    """A registry's answer is read only as far as a valid one can go (the root helper runs under a memory cap)."""
    import resource

    body = b" " * (192 << 20)
    for ref in ("v1", digest_of(body)):
        fake_registry.manifests[("test/huge", ref)] = (DOCKER_MANIFEST, body)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RegistryError, match="larger than 4 MiB"):
        api.ensure(f"{fake_registry.host}/test/huge:v1", site)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB
