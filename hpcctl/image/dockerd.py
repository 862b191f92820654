"""``dockerd://IMAGE``: an image from the local Docker daemon (docker SDK), saved and converted like a pull.

The daemon's socket is root-equivalent, so when root acts for a job user, that user must be allowed on the socket.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import pwd
import tarfile

from hpcctl.image.cache import CachedImage, ImageCache, ImageConfig, find
from hpcctl.image.errors import AuthDenied, NotFound, RegistryUnreachable
from hpcctl.image.flatten import Flattener
from hpcctl.image.layers import GZIP_MAGIC
from hpcctl.image.progress import Progress
from hpcctl.image.reference import DaemonImage
from hpcctl.image.squashfs import SquashfsWriter
from hpcctl.site.config import SiteConfig

SOCKET = "/var/run/docker.sock"


def _require_daemon() -> None:
    host = os.environ.get("DOCKER_HOST") or f"unix://{SOCKET}"
    if host.startswith("unix://") and not os.path.exists(host[len("unix://"):]):
        raise RegistryUnreachable(f"no Docker daemon runs on this node ({host[len('unix://'):]} does not exist)",
                                  "dockerd:// images come from the node's Docker daemon: start it there, or push "
                                  "the image to a registry")


def client():
    import docker
    from docker.errors import DockerException
    _require_daemon()
    try:
        return docker.from_env(timeout=60)
    except DockerException as exc:
        if "Permission denied" in str(exc):
            raise AuthDenied(f"you may not use the Docker daemon ({os.environ.get('DOCKER_HOST') or SOCKET})",
                             "use a registry image, or ask the admin to add you to the docker group") from None
        raise RegistryUnreachable(f"cannot reach the local Docker daemon: {str(exc).splitlines()[0]}",
                                  "start dockerd, or check DOCKER_HOST") from None


def _get(name: str):
    from docker.errors import ImageNotFound
    try:
        return client().images.get(name)
    except ImageNotFound:
        raise NotFound(f"image {name} is not in the local Docker daemon", "docker pull or docker build it first") \
            from None


def image_id(name: str) -> str:
    return _get(name).id


def check_user_may_use_daemon(uid: int | None) -> None:
    if uid is None or uid == 0 or os.geteuid() != 0:
        return
    _require_daemon()
    st = os.stat(SOCKET)
    user = pwd.getpwuid(uid)
    groups = {g for g in os.getgrouplist(user.pw_name, user.pw_gid)}
    if st.st_uid != uid and st.st_gid not in groups:
        raise AuthDenied(f"user {user.pw_name} may not use the Docker daemon ({SOCKET})",
                         "use a registry image, or ask the admin to add the user to the docker group")


def ensure(ref: DaemonImage, stores: list[ImageCache], site: SiteConfig, progress: Progress,
           uid: int | None = None) -> CachedImage:
    check_user_may_use_daemon(uid)
    image = _get(ref.name)
    digest = image.id
    store, entry = find(stores, digest) or (stores[-1], None)
    if entry is None:
        entry, _ = store.single_flight(
            digest, lambda: _convert(store, image, digest, str(ref), site.cache.compression, progress))
    store.touch(digest)
    return store.as_image(entry)


def _convert(cache: ImageCache, image, digest: str, reference: str, compression: str, progress: Progress):
    archive_path = cache.tmp / f"{digest[7:]}.{os.getpid()}.docker.tar"
    partial = cache.partial_path(digest)
    try:
        progress.stage(f"saving {reference} from the Docker daemon")
        with open(archive_path, "wb") as out:
            for chunk in image.save(named=False):
                out.write(chunk)
                progress.advance(len(chunk))
        with tarfile.open(archive_path, "r:") as archive:
            manifest = json.load(archive.extractfile("manifest.json"))[0]
            config = json.load(archive.extractfile(manifest["Config"]))
            with SquashfsWriter(partial, compression) as writer:
                flattener = Flattener(writer.stdin, spill_dir=str(cache.tmp))
                for layer in reversed(manifest["Layers"]):
                    raw = archive.extractfile(layer)
                    head = raw.read(2)
                    raw.seek(0)
                    stream = gzip.GzipFile(fileobj=raw) if head == GZIP_MAGIC else raw
                    flattener.add_layer(stream, layer.split("/")[-2] if "/" in layer else layer)
                report = flattener.finish()
        progress.close()
        return cache.publish(digest, partial, {
            "reference": reference, "layers": [], "config": ImageConfig.from_dict(config.get("config")).to_dict(),
            "auth_required": False, "compression": compression, "source": "dockerd", "sanitized": report.notes()})
    finally:
        progress.close()
        for path in (archive_path, partial):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
