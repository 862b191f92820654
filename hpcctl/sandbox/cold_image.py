"""Images no cache and no mirror has seen yet, for the tests and benchmarks of cold pulls: one layer of the sandbox's
busybox tree plus ``payload`` bytes of fresh random (incompressible) data, so every blob is new each time."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from hpcctl.sandbox import layout as L
from hpcctl.sandbox.oci_push import OCI_MANIFEST, Pusher, build_layer, image_config
from hpcctl.sandbox.test_images import PATH_ENV, busybox_tree


@dataclass(frozen=True)
class ColdImage:
    reference: str  # registry/repo:tag
    digest: str  # of the manifest: the cache key
    blobs: tuple[str, ...]  # the layer's and the config's digests
    layer_bytes: int  # the compressed layer's size (what a pull downloads, besides the small config)


def push(repo: str, payload: int, registry: str = L.REGISTRY) -> ColdImage:
    """Push ``repo``:<fresh tag> with a fresh payload of ``payload`` bytes."""
    tag = uuid.uuid4().hex[:12]
    work = Path(tempfile.mkdtemp(prefix="hpcctl-cold-", dir=L.BUILD_CACHE))
    try:
        root = work / "root"
        shutil.copytree(busybox_tree(), root, symlinks=True)
        with open(root / "payload.bin", "wb") as out:
            for _ in range(payload >> 20):
                out.write(os.urandom(1 << 20))
            out.write(os.urandom(payload & ((1 << 20) - 1)))
        layer = build_layer(root, work / "layer.tar.gz", ["."], excludes=["./.complete"])
        config = image_config([PATH_ENV, f"COLD_TAG={tag}"], ["/bin/sh"])
        digest = Pusher(registry).push_image(repo, tag, [layer], config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    request = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{digest}",
                                     headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(request, timeout=30) as reply:
        config_digest = json.load(reply)["config"]["digest"]
    return ColdImage(f"{registry}/{repo}:{tag}", digest, (layer.digest, config_digest), layer.size)
