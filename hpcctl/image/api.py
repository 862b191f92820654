"""What the CLI and the SPANK plugin call: resolve a reference, make sure its squashfs is cached, hold it in use.

- ``resolve(ref, site)``: one manifest request for a tag, none for a digest-pinned reference.
- ``ensure(ref, site, uid=...)``: a warm hit takes no lock and costs what ``resolve`` costs (a cached private image
  additionally needs the registry to accept *this* user's credentials); a cold pull is single-flight per node.
- ``in_use(image)`` / ``mark_in_use`` + ``release``: a shared flock on the image's ``.use`` file, which gc respects;
  taken by root (the use lock is root-only), waiting at most ``locks.USE_WAIT_S`` for a gc removing the image.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hpcctl.errors import HpcctlError
from hpcctl.image import credentials, locks
from hpcctl.image.cache import CachedImage, Entry, ImageCache, ImageConfig, find
from hpcctl.image.errors import AuthDenied, BadReference, LockBusy, NotFound, RegistryUnreachable
from hpcctl.image.progress import Progress
from hpcctl.image.reference import DaemonImage, ImageRef, LocalFile, parse
from hpcctl.image.registry import Registry, RegistryConfigView
from hpcctl.site.config import SiteConfig

__all__ = ["Resolved", "CachedImage", "ImageConfig", "resolve", "ensure", "in_use", "mark_in_use", "release",
           "node_cache", "caches", "shared_store"]


@dataclass(frozen=True)
class Resolved:
    reference: str  # canonical, e.g. docker.io/library/ubuntu:22.04
    digest: str  # sha256:... the reference points to ("" for local files)
    pinned: str  # canonical with @digest: what submit-time pinning writes into the job


def node_cache(site: SiteConfig, node: str | None = None) -> ImageCache:
    """The image cache of Slurm node ``node`` (needed where cache.root is per node: hpcctl.site.nodes.cache_node)."""
    return ImageCache(site.cache.root_for(node))


def user_cache() -> ImageCache:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return ImageCache(Path(base) / "hpcctl" / "images")


def caches(site: SiteConfig, node: str | None = None) -> list[ImageCache]:
    """Where to look, in order; the last one is where a pull writes. Root (and anyone who may write the node cache)
    uses the node cache only; other users read it and pull into their own cache."""
    local = node_cache(site, node)
    if os.geteuid() == 0 or local.writable():
        return [local]
    return [local, user_cache()]


def registry_for(ref: ImageRef, site: SiteConfig, uid: int | None = None, actions: str = "pull") -> Registry:
    settings = RegistryConfigView(insecure=tuple(site.registries.insecure), mirrors=dict(site.registries.mirrors),
                                  timeout_s=float(site.registries.timeout_s), retries=int(site.registries.retries))

    def lookup():
        return credentials.lookup(ref.registry, ref.user, uid, site.registries.netrc, site.registries.docker_config)
    return Registry(ref, settings, lookup, actions=actions)


def _parse(ref: str, site: SiteConfig):
    return parse(ref, site.registries.default)


def resolve(ref: str, site: SiteConfig, *, uid: int | None = None) -> Resolved:
    parsed = _parse(ref, site)
    if isinstance(parsed, LocalFile):
        path = str(Path(parsed.path).resolve())
        return Resolved(reference=path, digest="", pinned=path)
    if isinstance(parsed, DaemonImage):
        from hpcctl.image import dockerd
        image_id = dockerd.image_id(parsed.name)
        return Resolved(reference=str(parsed), digest=image_id, pinned=f"dockerd://{image_id}")
    if parsed.digest:
        return Resolved(parsed.canonical, parsed.digest, str(parsed))
    if parsed.oras:  # the manifest instead of its digest alone (one request too): a wrong scheme is refused here,
        from hpcctl.image import oras  # at submit, not by every node of the job
        manifest = registry_for(parsed, site, uid).manifest(parsed.tag)
        oras.sif_layer(manifest, str(parsed))
        return Resolved(parsed.canonical, manifest.digest, str(parsed.pinned(manifest.digest)))
    digest = _tag_digest(registry_for(parsed, site, uid), parsed)
    pinned = parsed.pinned(digest)
    return Resolved(parsed.canonical, digest, str(pinned))


def _tag_digest(registry: Registry, ref: ImageRef) -> str:
    digest = registry.head_digest(ref.tag)
    if not digest:
        _, _, digest = registry.get_manifest_bytes(ref.tag)
    return digest


def ensure(ref: str, site: SiteConfig, *, uid: int | None = None, gid: int | None = None,
           progress: bool = False, node: str | None = None, job: str | None = None) -> CachedImage:
    """The image's squashfs, pulling and converting it on a miss into the cache of ``node`` (see node_cache).
    ``uid`` is the user whose credentials are used. With a shared store (cache.shared), root goes through it: a
    miss is converted once for the cluster; ``job`` (a Slurm job id) names the store's use record of the image."""
    parsed = _parse(ref, site)
    stores = caches(site, node)
    if isinstance(parsed, LocalFile):
        _check_user_can_read(parsed.path, uid, gid)
        return _local_file(parsed, stores[-1])
    if isinstance(parsed, DaemonImage):
        from hpcctl.image import dockerd
        return dockerd.ensure(parsed, stores, site, Progress(progress), uid)

    registry = registry_for(parsed, site, uid)
    digest = parsed.digest or _tag_digest(registry, parsed)
    found = find(stores, digest)
    if found:
        _authorize(found[1], parsed, registry, site, uid)
        _same_kind(found[1], parsed)
        return _hit(*found)

    target = stores[-1]

    def build(into: ImageCache = target) -> Entry:
        """Pull and convert with ``into``'s layer store and tmp, publishing through ``into`` (the node cache; with a
        shared store in mount mode, a stand-in that publishes there)."""
        from hpcctl.image import pull
        reference = str(ImageRef(parsed.registry, parsed.repository, parsed.tag, digest)) if parsed.digest \
            else parsed.canonical
        extra_meta = {"pulled_by_uid": uid if uid is not None else os.geteuid()}
        if parsed.oras:
            from hpcctl.image import oras
            return oras.build(into, registry, registry.manifest(digest), f"oras://{reference}",
                              site.cache.low_watermark, Progress(progress), extra_meta)
        return pull.build(into, registry, registry.manifest(digest), reference, site.cache.compression,
                          site.cache.low_watermark, Progress(progress), extra_meta)

    shared = shared_store(site, node) if os.geteuid() == 0 else None
    if shared is not None:
        from hpcctl.image.shared_store import provide
        image = provide(shared, target, digest, parsed.canonical, build,
                        lambda found: _authorize(found, parsed, registry, site, uid), Progress(progress), job)
        _gc_after_pull(target, site, digest)
        return image

    entry, built = target.single_flight(digest, build)
    if not built:
        _authorize(entry, parsed, registry, site, uid)
        _same_kind(entry, parsed)
    _gc_after_pull(target, site, digest)
    return _hit(target, entry)


def _gc_after_pull(target: ImageCache, site: SiteConfig, digest: str) -> None:
    if target.disk_usage() > site.cache.high_watermark:
        from hpcctl.image import gc
        gc.collect(target, site.cache.low_watermark, keep={digest})


def shared_store(site: SiteConfig, node: str | None = None):
    """The site's shared image store (hpcctl.image.shared_store.SharedStore) as Slurm node ``node`` (default: this
    host's short name) sees it; None when the site has none."""
    if site.cache.shared is None:
        return None
    import socket

    from hpcctl.image.shared_store import SharedStore
    return SharedStore(site.cache.shared, node or socket.gethostname().split(".")[0])


def _authorize(entry: Entry, ref: ImageRef, registry: Registry, site: SiteConfig, uid: int | None) -> None:
    """A cached private image is handed out only after the repository it was pulled from accepted this user's own
    credentials for it (already done when resolving the tag there challenged them, else one HEAD request for its
    digest there), or after the repository the user asked for proved that it holds this very image by serving
    every blob of it, each checked against its digest: claiming the digest proves nothing, serving its bytes does.
    (The same image is often public in one registry and private in another.)"""
    if not entry.meta.get("auth_required"):
        return
    origin = parse(entry.meta["reference"])
    if (origin.registry, origin.repository) == (ref.registry, ref.repository):
        if not registry.auth_required:
            registry.head_digest(entry.digest)
        return
    try:
        registry_for(ImageRef(origin.registry, origin.repository), site, uid).head_digest(entry.digest)
    except (AuthDenied, NotFound, RegistryUnreachable) as denied:
        try:
            _prove_possession(registry, entry.digest)
        except HpcctlError:
            raise denied from None


def _same_kind(entry: Entry, ref: ImageRef) -> None:
    """A cached image serves references of its own kind only, oras:// a .sif and the others a container image, so
    a wrong scheme is refused whichever was pulled first (one manifest digest cannot be both)."""
    if entry.is_sif != ref.oras:
        from hpcctl.image import oras
        raise oras.wrong_kind(str(ref), ref.oras)


def _prove_possession(registry: Registry, digest: str) -> None:
    manifest = registry.manifest(digest)  # hashed against the digest
    for blob in (manifest.config, *manifest.layers):
        registry.download_blob(blob["digest"], blob.get("size"), _Discard())


class _Discard:
    """A file that forgets what is written to it: download_blob hashes the bytes, nothing needs keeping."""

    def write(self, data: bytes) -> int:
        return len(data)

    def seek(self, offset: int) -> int:
        return offset

    def truncate(self) -> int:
        return 0


def _hit(store: ImageCache, entry: Entry) -> CachedImage:
    store.touch(entry.digest)
    return store.as_image(entry)


def _check_user_can_read(path: str, uid: int | None, gid: int | None) -> None:
    """Root acting for a job user: the user must be able to read the file themselves."""
    if uid is None or os.geteuid() != 0 or uid == 0:
        return
    import pwd
    import subprocess
    try:
        group = gid if gid is not None else pwd.getpwuid(uid).pw_gid
    except KeyError:
        raise NotFound(f"uid {uid} has no passwd entry", "pass the uid of an existing user") from None
    if subprocess.run(["test", "-r", path], user=uid, group=group, extra_groups=[], cwd="/").returncode != 0:
        raise AuthDenied(f"image file {path} is not readable by uid {uid}",
                         "make the file readable by the job's user")


def _local_file(ref: LocalFile, store: ImageCache) -> CachedImage:
    path = Path(ref.path).resolve()
    if ref.is_sif:
        return _sif_file(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFound(f"image file {ref.path} does not exist", "check the path") from None
    if not path.is_file():
        raise BadReference(f"image file {ref.path} is not a regular file", "give the path of a .sqsh file")
    with open(path, "rb") as fh:
        if fh.read(4) != b"hsqs":
            raise BadReference(f"image file {ref.path} is not a squashfs image",
                               "convert it with `hpcctl image pull` or mksquashfs")
    return CachedImage(path=str(path), digest="", reference=str(path), size=st.st_size, config=ImageConfig(),
                       lock_path=None)


def _sif_file(path: Path) -> CachedImage:
    """A .sif is used in place: its primary system partition is the squashfs, at an offset into the file."""
    from hpcctl.image import sif
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotFound(f"image file {path} does not exist", "check the path") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadReference(f"image file {path} is not a regular file", "give the path of a .sif file")
        part = sif.read(fd).system_partition
    except sif.BadSif as exc:
        raise sif.BadSif(f"{path}: {exc.problem}", exc.fix) from None
    finally:
        os.close(fd)
    return CachedImage(path=str(path), digest="", reference=str(path), size=part.size, config=ImageConfig(),
                       lock_path=None, offset=part.offset)


def mark_in_use(image: CachedImage) -> int | None:
    """Hold a shared flock on the image's use file (gc skips it); returns the fd to pass to release().
    Raises NotFound when gc removed the image before the lock was taken: call ensure() again."""
    if image.lock_path is None:
        return None
    fd = os.open(image.lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        locks.flock_within(fd, fcntl.LOCK_SH, locks.USE_WAIT_S,
                           f"the use lock {image.lock_path} of image {image.reference}",
                           "gc is removing that image and seems stuck: try again later, or ask the admin to end "
                           "that process")
    except LockBusy:
        os.close(fd)
        raise
    meta = Path(image.path).with_suffix(".json")
    if not meta.exists():
        os.close(fd)
        raise NotFound(f"image {image.reference} was removed from the cache just now", "pull it again")
    if image.open_as is None:
        with contextlib.suppress(OSError):
            os.utime(meta)
    return fd


def release(handle: int | None) -> None:
    if handle is not None:
        os.close(handle)


@contextlib.contextmanager
def in_use(image: CachedImage) -> Iterator[CachedImage]:
    handle = mark_in_use(image)
    try:
        yield image
    finally:
        release(handle)
