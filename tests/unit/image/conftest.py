"""Fixtures for image tests: a fake registry with a small two-layer image, and a site config using it."""

from __future__ import annotations

import pytest
from fake_registry import SMALL, FakeRegistry, push

from hpcctl.image import registry as registry_module
from hpcctl.site.config import CacheConfig, RegistryConfig, SiteConfig


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
