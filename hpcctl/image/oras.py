"""``oras://`` images: a .sif stored in an OCI registry as an ORAS artifact, as ``apptainer push oras://`` stores it.

The artifact is an OCI manifest with the empty config ``{}`` (media type ``application/vnd.sylabs.sif.config.v1+json``)
and exactly one layer, the .sif file itself (``application/vnd.sylabs.sif.layer.v1.sif``; Singularity before 3.7
wrote ``appliciation/vnd.sylabs.sif.layer.tar``), annotated with its file name (``org.opencontainers.image.title``).

Pulling streams that layer through the registry client (auth, mirrors, retries, bounded by its declared size, hashed
against its digest) straight into the cache's partial file, reads its header with hpcctl.image.sif and publishes the
.sif itself as the cache entry, with the offset and size of its system partition in the metadata: the node mounts
those bytes as it mounts a .sif file a user names (same Singularity semantics, no copy of the partition, and the
signatures and recipe stay with the image).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import stat
from pathlib import Path

from hpcctl.image import sif
from hpcctl.image.cache import Entry, ImageCache, ImageConfig
from hpcctl.image.errors import NoSpace, RegistryError
from hpcctl.image.progress import Progress
from hpcctl.image.pull import check_space
from hpcctl.image.registry import OCI_MANIFEST, Manifest, Registry, sha256_digest

SIF_LAYER = "application/vnd.sylabs.sif.layer.v1.sif"
SIF_LAYER_PROTOTYPE = "appliciation/vnd.sylabs.sif.layer.tar"  # sic: Singularity < 3.7
SIF_CONFIG = "application/vnd.sylabs.sif.config.v1+json"
EMPTY_CONFIG = b"{}"
TITLE = "org.opencontainers.image.title"
RUNSCRIPT = "/.singularity.d/runscript"  # what `apptainer run` runs: the image's CMD


def sif_layer(manifest: Manifest, reference: str) -> dict:
    """The one SIF layer of an ORAS artifact; RegistryError, one line, for anything else."""
    layers = manifest.layers
    if len(layers) == 1 and layers[0].get("mediaType") in (SIF_LAYER, SIF_LAYER_PROTOTYPE):
        size = layers[0].get("size")
        if not isinstance(size, int) or size <= 0:
            raise RegistryError(f"{reference}: the SIF layer's size '{size}' is not a positive number",
                                "push the .sif again")
        return layers[0]
    found = ", ".join(_shown(layer.get("mediaType")) for layer in layers[:4]) or "no layers"
    if len(layers) > 4:
        found += f" and {len(layers) - 4} more layers"
    raise RegistryError(f"{reference} is not a SIF pushed as an ORAS artifact: its manifest has {found}, not one "
                        f"layer of {SIF_LAYER}",
                        "pull a container image without oras://; push a .sif with `hpcctl image push` or "
                        "`apptainer push`")


def _shown(value) -> str:
    """A registry's string in a one-line message: printable, at most 100 characters."""
    return "".join(c if c.isprintable() else "?" for c in str(value))[:100]


def wrong_kind(reference: str, oras: bool) -> RegistryError:
    """The one line for a reference whose scheme does not match what its manifest holds."""
    if oras:
        return RegistryError(f"{reference} is not a SIF pushed as an ORAS artifact: it is a container image",
                             "pull a container image without oras://")
    return RegistryError(f"{reference} is a .sif stored as an ORAS artifact, not a container image",
                         f"pull it as oras://{reference}")


def build(cache: ImageCache, registry: Registry, manifest: Manifest, reference: str, low_watermark: int,
          progress: Progress, extra_meta: dict | None = None) -> Entry:
    """Download the artifact's .sif into the cache and publish it; call with the image's pull lock held (through
    ImageCache.single_flight). Leaves nothing valid on failure."""
    layer = sif_layer(manifest, reference)
    size = layer["size"]
    check_space(cache, size, reference, low_watermark)
    partial = cache.partial_path(manifest.digest)
    progress.stage(f"pulling {reference} (a .sif)", size)
    try:
        with open(partial, "wb") as out:
            registry.download_blob(layer["digest"], size, out, progress.advance)
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            part = sif.read(fd).system_partition
        except sif.BadSif as exc:
            raise sif.BadSif(f"{reference}: {exc.problem}", exc.fix) from None
        finally:
            os.close(fd)
        progress.close()
        meta = {"reference": reference, "manifest_digest": manifest.manifest_digest, "layers": [],
                "sif_digest": layer["digest"], "sif_offset": part.offset, "sif_size": part.size,
                "config": ImageConfig(cmd=(RUNSCRIPT,)).to_dict(), "auth_required": manifest.auth_required,
                "downloaded_bytes": size, "registry_requests": registry.requests, "source": "sif",
                **(extra_meta or {})}
        return cache.publish(manifest.digest, partial, meta)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"no space left in the image cache at {cache.root} while pulling {reference}",
                          "run `hpcctl image gc` or free space on that disk") from None
        raise
    finally:
        progress.close()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def push(path: Path, registry: Registry, tag: str, progress: Progress) -> str:
    """Push the .sif at ``path`` as an ORAS artifact under ``tag``, as ``apptainer push oras://`` lays it out;
    returns the manifest's digest. The file's SIF header and descriptors are checked before anything is sent (its
    architecture is not: a .sif for other nodes may be pushed from here)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise sif.BadSif(f"cannot open {path}: {exc.strerror.lower()}", "give the path of a readable .sif file") \
            from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise sif.BadSif(f"{path} is not a regular file", "give the path of a .sif file")
    with os.fdopen(fd, "rb") as source:
        try:
            sif.read(fd)
        except sif.BadSif as exc:
            raise sif.BadSif(f"{path}: {exc.problem}", exc.fix) from None
        size = os.fstat(fd).st_size
        progress.stage(f"hashing {path.name}", size)
        digest = hashlib.sha256()
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            progress.advance(len(chunk))
        layer_digest = "sha256:" + digest.hexdigest()
        progress.stage(f"pushing {path.name} to {registry.ref}", size)
        registry.push_blob(layer_digest, size, source)
        progress.close()
    config_digest = sha256_digest(EMPTY_CONFIG)
    registry.push_blob(config_digest, len(EMPTY_CONFIG), io.BytesIO(EMPTY_CONFIG))
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": SIF_CONFIG, "digest": config_digest, "size": len(EMPTY_CONFIG)},
                "layers": [{"mediaType": SIF_LAYER, "digest": layer_digest, "size": size,
                            "annotations": {TITLE: path.name}}]}
    return registry.put_manifest(tag, json.dumps(manifest, separators=(",", ":")).encode(), OCI_MANIFEST)

