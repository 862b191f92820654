"""Where a step's image comes from: a squashfs file the user can read, or the node's image cache."""

from __future__ import annotations

import os

from hpcctl.container.access import Identity, readable
from hpcctl.container.build import Image
from hpcctl.container.options import is_file_reference
from hpcctl.container.sif_file import is_sif, sif_image
from hpcctl.errors import HpcctlError
from hpcctl.site.config import SiteConfig


def _api():
    try:
        from hpcctl.image import api
    except ImportError:
        raise HpcctlError("registry images are not supported by this hpcctl installation yet",
                          "pass a squashfs file: --container-image=/path/to/image.sqsh") from None
    return api


def pin(reference: str, site: SiteConfig, uid: int) -> str:
    """tag -> reference@digest, so every node and step of the job runs the same image."""
    return _api().resolve(reference, site, uid=uid).pinned


def _pinned_in_node_cache(reference: str, site: SiteConfig, node: str):
    """The node cache's entry for a digest-pinned reference of an image that needs no credentials: what every step
    after the first on a node asks for. Found without the registry client, whose import alone costs about 80 ms
    per step and node; anything else (a miss, a private image) goes through the image API."""
    from hpcctl.image.cache import ImageCache, find
    from hpcctl.image.reference import ImageRef, parse

    parsed = parse(reference, site.registries.default)
    if not isinstance(parsed, ImageRef) or not parsed.digest:
        return None
    found = find([ImageCache(site.cache.root_for(node))], parsed.digest)
    if found is None or found[1].meta.get("auth_required") or found[1].is_sif != parsed.oras:
        return None
    store, entry = found
    store.touch(entry.digest)
    return store.as_image(entry)


def locate(reference: str, site: SiteConfig, who: Identity, node: str, job: str | None = None) -> tuple[Image, bool]:
    """The step's image, and whether it is a public entry of the node cache found by its pinned digest (which any
    later step of the same shape may reuse without asking the registry again). ``job``: the Slurm job id, which a
    shared image store records as a user of the image."""
    if is_file_reference(reference):
        problem = readable([reference], who)[reference]
        if problem:
            raise HpcctlError(f"--container-image: {reference} {problem}",
                              "pass a squashfs file that exists on the compute nodes and that you can read")
        if os.path.isdir(reference):  # only a squashfs file: a directory would be the host's own tree
            raise HpcctlError(f"--container-image: {reference} is a directory",
                              "pass a squashfs file (an unpacked tree: make one with mksquashfs)")
        if is_sif(reference):
            return sif_image(reference, reference, who), False
        return Image(path=reference, reference=reference, user_file=True), False
    cached = _pinned_in_node_cache(reference, site, node)
    if cached:
        return Image.of_cached(cached, reference), True
    return Image.of_cached(_api().ensure(reference, site, uid=who.uid, gid=who.gid, node=node, job=job),
                           reference), False
