"""Fixtures for image tests: a fake registry with a small two-layer image, and a site config using it."""

from __future__ import annotations

import json

import pytest

from fake_registry import FakeRegistry
from hpcctl.image import registry as registry_module
from hpcctl.site.config import CacheConfig, RegistryConfig, SiteConfig
from image_layers import e, gz_layer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push(reg: FakeRegistry, repo: str, tag: str, layers_bottom_up: list, env=("PATH=/bin",)) -> str:
    descriptors, diff_ids = [], []
    for entries in layers_bottom_up:
        blob, digest, diff_id = gz_layer(entries)
        reg.blobs[digest] = blob
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
                            "size": len(blob)})
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": list(env), "Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_digest = reg.add_blob(config)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                           "size": len(config)},
                "layers": descriptors}
    return reg.add_manifest(repo, tag, manifest, OCI_MANIFEST)


SMALL = [[e("bin", "dir"), e("bin/sh", data=b"#!shell", mode=0o755), e("etc", "dir"),
          e("etc/motd", data=b"hello")],
         [e("etc", "dir"), e("etc/.wh.motd"), e("etc/os-release", data=b"ID=test\n")]]


@pytest.fixture
def fake_registry(monkeypatch):
    monkeypatch.setattr(registry_module, "_backoff", lambda attempt, retry_after: 0)
    reg = FakeRegistry().start()
    reg.small_digest = push(reg, "test/small", "v1", SMALL)
    yield reg
    reg.stop()


@pytest.fixture
def site(tmp_path, fake_registry) -> SiteConfig:
    return SiteConfig(path="test", cluster="test", cache=CacheConfig(root=str(tmp_path / "cache"),
                                                                     high_watermark=1 << 30, low_watermark=1 << 29),
                      registries=RegistryConfig(insecure=(fake_registry.host,), netrc=str(tmp_path / "netrc"),
                                                docker_config=False, timeout_s=5, retries=3))
