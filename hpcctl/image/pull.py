"""A cold pull: layers download in parallel into the layer store while, newest first, each finished layer streams
through the flattener into tar2sqfs; the squashfs is published only when everything checked out."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hpcctl.image import gc
from hpcctl.image.cache import Entry, ImageCache, ImageConfig
from hpcctl.image.errors import NoSpace, RegistryError
from hpcctl.image.flatten import Flattener, FlattenReport
from hpcctl.image.layers import LayerStore
from hpcctl.image.progress import Progress, human
from hpcctl.image.registry import Manifest, Registry
from hpcctl.image.squashfs import SquashfsWriter

PARALLEL_DOWNLOADS = 4
# squashfs size relative to the compressed layers, for the free-space check before a pull (zstd packs a little
# tighter than gzip, but images with many overwritten files can come out larger)
SQUASHFS_FACTOR = 1.5


def _need_bytes(store: LayerStore, layers: list[dict]) -> int:
    missing = sum(int(d.get("size") or 0) for d in layers if not store.has(d["digest"], d.get("size")))
    return missing + int(SQUASHFS_FACTOR * sum(int(d.get("size") or 0) for d in layers))


def check_space(cache: ImageCache, need: int, reference: str, low_watermark: int) -> None:
    """Raise NoSpace unless ``need`` bytes fit; first try to make room with gc. ``need`` comes from the manifest,
    which anyone who may push to a registry writes, so gc makes room for it only when removing unused images down
    to ``low_watermark`` (of measured usage) can be enough: a claim that cannot fit costs no image, and any claim
    at most the least recently used images above the low watermark, which gc may remove anyway."""
    free = shutil.disk_usage(cache.root).free
    if free >= need:
        return
    usage = cache.disk_usage()
    if need - free <= usage - low_watermark:
        gc.collect(cache, target=usage - (need - free))
        free = shutil.disk_usage(cache.root).free
    if free < need:
        raise NoSpace(f"no space left for {reference} in the image cache at {cache.root}: its manifest says it "
                      f"needs about {human(need)}, {human(free)} free after removing unused images down to the "
                      f"low watermark ({human(low_watermark)})",
                      "remove images with `hpcctl image rm`, or ask the admin for a larger cache disk")


def _clamp_note(report: FlattenReport) -> str:
    """The one progress line an image with mtimes past 2106 gets; '' for the others."""
    if not report.mtimes_clamped:
        return ""
    return (f"note: {report.mtimes_clamped} mtimes past 2106 were clamped to 2106-02-07 "
            "(squashfs stores 32-bit seconds)")


def build(cache: ImageCache, registry: Registry, manifest: Manifest, reference: str, compression: str,
          low_watermark: int, progress: Progress, extra_meta: dict | None = None) -> Entry:
    """Download, flatten and convert; call with the image's pull lock held. Leaves nothing valid on failure. Room is
    made for the image by removing unused images, never below ``low_watermark``."""
    if any("vnd.sylabs.sif" in str(layer.get("mediaType")) for layer in manifest.layers):
        from hpcctl.image import oras
        raise oras.wrong_kind(reference, oras=False)
    store = LayerStore(cache.blobs, cache.tmp)
    config_raw = registry.get_blob_bytes(manifest.config["digest"])
    try:
        config_doc = json.loads(config_raw)
    except ValueError:
        raise RegistryError(f"the config blob of {reference} is not JSON", "re-push the image") from None
    layers = manifest.layers
    for layer in layers:
        if layer.get("mediaType", "").endswith(("+encrypted", ".encrypted")):
            raise RegistryError(f"{reference} has encrypted layers", "use an unencrypted image")
    check_space(cache, _need_bytes(store, layers), reference, low_watermark)

    partial = cache.partial_path(manifest.digest)
    total = sum(int(d.get("size") or 0) for d in layers)
    progress.stage(f"pulling {reference} ({len(layers)} layers)", total)
    downloaded = 0
    try:
        with ThreadPoolExecutor(max_workers=PARALLEL_DOWNLOADS) as pool:
            futures = [pool.submit(store.fetch, registry, d, progress.advance, manifest.auth_required)
                       for d in reversed(layers)]
            try:
                with SquashfsWriter(partial, compression) as writer:
                    flattener = Flattener(writer.stdin, spill_dir=str(cache.tmp))
                    for descriptor, future in zip(reversed(layers), futures):
                        _, fetched = future.result()
                        downloaded += fetched
                        with store.open_tar(descriptor["digest"], just_verified=fetched > 0) as stream:
                            flattener.add_layer(stream, descriptor["digest"])
                    report = flattener.finish()
            finally:
                for future in futures:
                    future.cancel()
        progress.close(_clamp_note(report))
        meta = {"reference": reference, "manifest_digest": manifest.manifest_digest,
                "config_digest": manifest.config["digest"], "layers": [d["digest"] for d in layers],
                "config": ImageConfig.from_dict(config_doc.get("config")).to_dict(),
                "auth_required": manifest.auth_required, "compression": compression,
                "downloaded_bytes": downloaded, "layer_bytes": total, "registry_requests": registry.requests,
                "sanitized": report.notes(), **(extra_meta or {})}
        return cache.publish(manifest.digest, partial, meta)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"no space left in the image cache at {cache.root} while pulling {reference}",
                          "run `hpcctl image gc` or free space on that disk") from None
        raise
    finally:
        progress.close()
        with contextlib.suppress(FileNotFoundError):
            Path(partial).unlink()
        for leftover in cache.tmp.glob(f"blob-*.{os.getpid()}.*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
