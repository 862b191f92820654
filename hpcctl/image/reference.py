"""Image references in every form users type, parsed into one canonical shape.

Forms (pyxis/enroot users and Docker users both feel at home):
- ``nvcr.io/nvidia/pytorch:23.12``, ``ubuntu`` (-> ``docker.io/library/ubuntu:latest``), ``docker://...``
- enroot's ``[USER@][REGISTRY#]IMAGE[:TAG][@sha256:DIGEST]``, e.g. ``nvcr.io#nvidia/pytorch:23.12``
- ``dockerd://IMAGE``: an image in the local Docker daemon
- ``oras://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]``: a .sif pushed to a registry as an ORAS artifact (as
  ``apptainer push oras://`` does); the rest is the registry grammar above
- local files: ``/path/img.sqsh``, ``./img.sqsh``, ``../img.sqsh`` and ``.sif`` files
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcctl.image.errors import BadReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "docker.io"}
DEFAULT_TAG = "latest"

_USER = re.compile(r"[A-Za-z0-9_.$+-]+")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
FORMS = ("write [USER@][REGISTRY/]IMAGE[:TAG][@sha256:DIGEST], REGISTRY#IMAGE[:TAG], dockerd://IMAGE, "
         "oras://REGISTRY/IMAGE[:TAG] or ./file.sqsh")


@dataclass(frozen=True)
class ImageRef:
    """A registry image: ``registry`` (host[:port], docker.io for Docker Hub), ``repository``, tag and/or digest;
    ``oras``: a .sif stored as an ORAS artifact there (``oras://``), not a container image."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    user: str | None = None
    oras: bool = False

    @property
    def canonical(self) -> str:
        """registry/repository[:tag][@digest]; the tag defaults to latest when there is no digest."""
        name = f"{self.registry}/{self.repository}"
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name

    def pinned(self, digest: str) -> "ImageRef":
        return ImageRef(self.registry, self.repository, self.tag, digest, self.user, self.oras)

    def __str__(self) -> str:
        name = f"{self.user}@{self.canonical}" if self.user else self.canonical
        return f"oras://{name}" if self.oras else name


@dataclass(frozen=True)
class LocalFile:
    """A squashfs (or .sif) file on the node; used in place, never copied."""

    path: str

    @property
    def is_sif(self) -> bool:
        return self.path.endswith(".sif")

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class DaemonImage:
    """An image in the local Docker daemon (``dockerd://IMAGE``)."""

    name: str

    def __str__(self) -> str:
        return f"dockerd://{self.name}"


Reference = ImageRef | LocalFile | DaemonImage


def _bad(ref: str, what: str) -> BadReference:
    return BadReference(f"bad image reference '{ref}': {what}", FORMS)


def parse(ref: str, default_registry: str = DOCKER_HUB) -> Reference:
    """Parse any supported form; raises BadReference with one line saying what is wrong."""
    if not ref or not ref.strip():
        raise _bad(ref, "it is empty")
    if ref != ref.strip() or any(c.isspace() for c in ref):
        raise _bad(ref, "it contains whitespace")
    if ref.startswith(("/", "./", "../")):
        return LocalFile(ref)
    if ref.startswith("dockerd://"):
        name = ref[len("dockerd://"):]
        if not name:
            raise _bad(ref, "no image name after dockerd://")
        return DaemonImage(name)
    oras = ref.startswith("oras://")
    rest = ref[len("docker://"):] if ref.startswith("docker://") else ref[len("oras://"):] if oras else ref
    if "://" in rest:
        raise _bad(ref, f"unknown scheme '{rest.split('://')[0]}://' (use docker://, dockerd:// or oras://)")
    if not rest:
        raise _bad(ref, "no image name")

    digest = None
    if re.search(r"@(sha256|sha384|sha512|blake3):[^@/]*$", rest):
        rest, digest = rest.rsplit("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise _bad(ref, f"digest '{digest}' is not sha256: followed by 64 lowercase hex digits")

    user = None
    if "@" in rest:
        user, rest = rest.split("@", 1)
        if not _USER.fullmatch(user):
            raise _bad(ref, f"user '{user}' has characters other than letters, digits and _.$+-")

    explicit_registry = None
    if "#" in rest:
        explicit_registry, rest = rest.split("#", 1)
        if not _HOST.fullmatch(explicit_registry):
            raise _bad(ref, f"registry '{explicit_registry}' is not a host[:port]")

    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise _bad(ref, f"tag '{tag}' must be 1-128 letters, digits, '_', '.' or '-' and not start with '.' or '-'")

    registry = explicit_registry
    if registry is None:
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            if not _HOST.fullmatch(first):
                raise _bad(ref, f"registry '{first}' is not a host[:port]")
            registry, rest = first, remainder
        else:
            registry = default_registry
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    if not rest:
        raise _bad(ref, "no repository name")
    for component in rest.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise _bad(ref, f"repository part '{component}' must be lowercase letters and digits, "
                            "separated by '.', '_', '__' or '-'")
    if registry == DOCKER_HUB and "/" not in rest:
        rest = f"library/{rest}"
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(registry=registry, repository=rest, tag=tag, digest=digest, user=user, oras=oras)
