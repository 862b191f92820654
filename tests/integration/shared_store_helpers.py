"""The shared image store's tests: cold images (a layer no node has seen), the sandbox's shared-store site config
switched on for the plugin (plugstack.conf's site=), and what the store holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from hpcctl.sandbox import layout as L

PLUGSTACK = Path("/etc/slurm/plugstack.conf.d/hpcctl.conf")


def push_cold(registry: str, repo: str, payload_mb: int = 1, username: str | None = None,
              password: str | None = None) -> tuple[str, str]:
    """Push busybox plus a layer of ``payload_mb`` MiB of fresh random bytes (incompressible: its conversion takes
    time) under a new tag; returns (reference, that layer's digest)."""
    from hpcctl.sandbox.oci_push import Pusher, build_layer, image_config
    from hpcctl.sandbox.test_images import LAYER_DIR, PATH_ENV, busybox_tree

    root = busybox_tree()
    layers = [build_layer(root, LAYER_DIR / "busybox-bin.tar.gz", ["./bin"]),
              build_layer(root, LAYER_DIR / "busybox-rest.tar.gz", ["."], excludes=["./bin", "./.complete"])]
    tag = uuid.uuid4().hex[:12]
    work = Path(tempfile.mkdtemp(prefix="hpcctl-cold-"))
    try:
        tree = work / "tree"
        (tree / "payload").mkdir(parents=True)
        with open(tree / "payload" / "data", "wb") as fh:
            for _ in range(payload_mb):
                fh.write(os.urandom(1 << 20))
        (tree / "payload" / "tag").write_text(tag + "\n")
        fresh = build_layer(tree, work / "payload.tar.gz", ["./payload"])
        Pusher(registry, username, password).push_image(
            repo, tag, [*layers, fresh], image_config([PATH_ENV, f"COLD_TAG={tag}"], ["/bin/sh"]))
        return f"{registry}/{repo}:{tag}", fresh.digest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def point_plugin_at(site: Path) -> None:
    """The sandbox's plugstack.conf line with ``site=`` for the jobs started from now on (no other argument: another
    test's temporary ones are not carried on). Other tests and `sandbox up` rewrite that file too: call it right
    before each job."""
    from hpcctl.sandbox.plugin import plugstack_line
    PLUGSTACK.write_text(plugstack_line().replace(f"site={L.SITE_FILE}", f"site={site}"))


def shared_entries() -> list[dict]:
    """The store's metadata files, read as root."""
    return [json.loads(p.read_text()) for p in sorted((L.SHARED_STORE / "images").glob("*.json"))]


def shared_entry(digest: str) -> dict | None:
    path = L.SHARED_STORE / "images" / f"{digest.split(':', 1)[1]}.json"
    return json.loads(path.read_text()) if path.exists() else None


def hpcctl(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "hpcctl", "--site", str(L.SHARED_SITE_FILE), *args],
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise AssertionError(f"hpcctl {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result
