"""`hpcctl image build`: a Dockerfile or a Singularity ``.def`` built by the local Docker daemon (docker SDK), then
pushed with the daemon to the registry its name names.

Builds need a Docker daemon on the machine that builds (a login or build node), never on compute nodes: they run
the result from the registry (after ``--push``) or from the cache it was converted into.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

from hpcctl.errors import HpcctlError
from hpcctl.image import dockerd, recipe
from hpcctl.image.credentials import Credentials
from hpcctl.image.errors import RegistryUnreachable
from hpcctl.image.reference import ImageRef, parse


def is_singularity_recipe(path: Path) -> bool:
    """A ``.def`` file, or any file whose first keyword line is ``Bootstrap:`` (as Apptainer's recipes start)."""
    if path.suffix == ".def":
        return True
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path) as fh:
        for line in fh:
            if line.strip() and not line.lstrip().startswith("#"):
                return line.strip().lower().startswith("bootstrap:")
    return False


def target(name: str) -> ImageRef:
    """The ``-t`` name as a registry reference (a tag, no digest)."""
    ref = parse(name)
    if not isinstance(ref, ImageRef) or ref.digest or ref.user:
        raise HpcctlError(f"-t {name}: name the image as REGISTRY/REPOSITORY[:TAG]",
                          "e.g. -t registry.example.org/me/tool:1.0")
    return ref


def docker_name(ref: ImageRef) -> str:
    return f"{ref.registry}/{ref.repository}:{ref.tag}"


def _client():
    try:
        return dockerd.client()
    except RegistryUnreachable as exc:
        raise HpcctlError(f"{exc.problem}: builds need a Docker daemon on the machine that builds",
                          "run hpcctl image build on a node with Docker (not a compute node), or start dockerd "
                          "there") from None


def build(path: Path, ref: ImageRef, network: str | None, log: Callable[[str], None]) -> str:
    """Build ``path`` (Dockerfile or .def) as ``ref`` in the local daemon; returns the image id. ``log`` gets the
    notes about skipped recipe sections and the build's output lines."""
    if not path.is_file():
        raise HpcctlError(f"{path} is not a file", "give the path of a Dockerfile or a Singularity .def recipe")
    if is_singularity_recipe(path):
        conversion = recipe.convert(path)
        for note in conversion.notes:
            log(f"note: {note}")
        source = {"fileobj": conversion.context, "custom_context": True}
    else:
        source = {"path": str(path.parent.resolve()), "dockerfile": path.name}
    client = _client()
    image_id = None
    with contextlib.ExitStack() as stack:
        if "fileobj" in source:
            stack.callback(source["fileobj"].close)
        for chunk in client.api.build(**source, tag=docker_name(ref), rm=True, forcerm=True, network_mode=network,
                                      decode=True):
            if "error" in chunk:
                last = (chunk["error"].strip().splitlines() or ["(no message)"])[-1]
                raise HpcctlError(f"the build of {path} failed: {last}",
                                  "see the build output above; fix the recipe and build again")
            if chunk.get("stream", "").strip():
                log(chunk["stream"].rstrip("\n"))
            image_id = (chunk.get("aux") or {}).get("ID", image_id)
    if image_id is None:
        image_id = dockerd.image_id(docker_name(ref))
    return image_id


def push(ref: ImageRef, credentials: Credentials | None, log: Callable[[str], None]) -> str:
    """Push ``ref`` from the local daemon to its registry; returns the manifest digest the registry stored."""
    client = _client()
    auth = {"username": credentials.username, "password": credentials.password} if credentials else None
    digest = None
    for chunk in client.api.push(f"{ref.registry}/{ref.repository}", tag=ref.tag, stream=True, decode=True,
                                 auth_config=auth):
        if "error" in chunk:
            first = (chunk["error"].strip().splitlines() or ["(no message)"])[0]
            raise HpcctlError(f"pushing {docker_name(ref)} failed: {first}",
                              "check the registry's name, that it is up, and your credentials for it (docker login "
                              "or ~/.config/enroot/.credentials)")
        if chunk.get("status") and chunk.get("id") is None:
            log(chunk["status"])
        digest = (chunk.get("aux") or {}).get("Digest", digest)
    if digest is None:
        raise HpcctlError(f"pushing {docker_name(ref)}: the Docker daemon reported no digest", "push it again")
    return digest
