"""Crafted malicious layers pushed to the sandbox registry: each one refused or neutralized by `hpcctl image pull`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from image_layers import CRAFTED, push_to_sandbox
from image_site import ImageSite, listing

pytestmark = pytest.mark.integration
ESCAPE = Path("/tmp/hpcctl-escape")


@pytest.fixture(scope="module")
def site():
    return ImageSite()


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_image(sandbox, site, name, tmp_path):
    case = CRAFTED[name]
    tag = uuid.uuid4().hex[:12]
    push_to_sandbox(sandbox.registry, f"hpcctl-test/crafted-{name}", tag, case.layers, tmp_path)
    ref = f"{sandbox.registry}/hpcctl-test/crafted-{name}:{tag}"
    result = site.run("pull", "--json", ref, check=False)
    assert not ESCAPE.exists()
    if case.rejected:
        assert result.returncode != 0
        assert result.stderr.startswith("hpcctl: error: layer ") and case.rejected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert ref not in [row["reference"] for row in site.ls()]
        return
    assert result.returncode == 0, result.stderr
    files = listing(json.loads(result.stdout)["path"])
    for path in case.absent:
        assert f"squashfs-root/{path}\n" not in files
    for path in case.present:
        assert f"squashfs-root/{path}" in files
    assert not any(line[3] in "sS" or line[6] in "sS" for line in files.splitlines() if line[:1] == "-")
