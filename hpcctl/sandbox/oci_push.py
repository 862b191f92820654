"""Build image layers from directory trees and push images to a registry over the distribution API.

The sandbox uses this to fill its registry with test images made by the project's own code. Layers are written
once into a build cache; pushing skips blobs the registry already has.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hpcctl.errors import HpcctlError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass(frozen=True)
class Layer:
    path: Path  # the gzip-compressed tar
    digest: str  # of the compressed blob
    diff_id: str  # of the uncompressed tar
    size: int


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_layer(root: Path, out: Path, members: list[str], excludes: list[str] = ()) -> Layer:
    """Tar ``members`` (paths relative to ``root``, e.g. "./usr") into ``out`` (.tar.gz), reproducibly."""
    digest_file = out.with_suffix(".json")
    if out.exists() and digest_file.exists():
        meta = json.loads(digest_file.read_text())
        return Layer(out, meta["digest"], meta["diff_id"], out.stat().st_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tar_path = out.with_suffix("")
    cmd = ["tar", "--sort=name", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(tar_path),
           *[f"--exclude={e}" for e in excludes], *members]
    subprocess.run(cmd, check=True)
    diff_id = _sha256_file(tar_path)
    with open(out.with_suffix(".gz.tmp"), "wb") as gz:
        subprocess.run(["pigz", "-n", "-c", str(tar_path)], stdout=gz, check=True)
    tar_path.unlink()
    out.with_suffix(".gz.tmp").replace(out)
    layer = Layer(out, _sha256_file(out), diff_id, out.stat().st_size)
    digest_file.write_text(json.dumps({"digest": layer.digest, "diff_id": layer.diff_id}))
    return layer


class Pusher:
    """Pushes blobs and manifests to ``registry`` (host:port, plain HTTP) with optional basic auth."""

    def __init__(self, registry: str, username: str | None = None, password: str | None = None):
        self.base = f"http://{registry}/v2"
        self.headers = {}
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def _request(self, method: str, url: str, data=None, headers: dict | None = None):
        req = urllib.request.Request(url, data=data, method=method, headers={**self.headers, **(headers or {})})
        try:
            return urllib.request.urlopen(req, timeout=120)
        except urllib.error.HTTPError as exc:
            if method == "HEAD" and exc.code == 404:
                return None
            raise HpcctlError(f"registry {method} {url}: HTTP {exc.code} {exc.read()[:200]!r}") from None

    def has_manifest(self, repo: str, tag: str, media_type: str) -> bool:
        return self._request("HEAD", f"{self.base}/{repo}/manifests/{tag}", headers={"Accept": media_type}) is not None

    def push_blob(self, repo: str, digest: str, path: Path | None = None, data: bytes | None = None) -> None:
        if self._request("HEAD", f"{self.base}/{repo}/blobs/{digest}"):
            return
        location = self._request("POST", f"{self.base}/{repo}/blobs/uploads/", data=b"").headers["Location"]
        if location.startswith("/"):
            location = self.base[: -len("/v2")] + location
        sep = "&" if "?" in location else "?"
        size = path.stat().st_size if path else len(data)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if path:
            with open(path, "rb") as body:
                self._request("PUT", f"{location}{sep}digest={digest}", data=body, headers=headers)
        else:
            self._request("PUT", f"{location}{sep}digest={digest}", data=data, headers=headers)

    def push_image(self, repo: str, tag: str, layers: list[Layer], config: dict, docker_v2: bool = False) -> str:
        """Push layers, config and manifest; returns the manifest digest."""
        config = {**config, "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}}
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        for layer in layers:
            self.push_blob(repo, layer.digest, path=layer.path)
        self.push_blob(repo, config_digest, data=config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker_v2 else OCI_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG if docker_v2 else OCI_CONFIG, "digest": config_digest,
                       "size": len(config_bytes)},
            "layers": [{"mediaType": DOCKER_LAYER if docker_v2 else OCI_LAYER, "digest": layer.digest,
                        "size": layer.size} for layer in layers],
        }
        body = json.dumps(manifest, sort_keys=True).encode()
        self._request("PUT", f"{self.base}/{repo}/manifests/{tag}", data=body,
                      headers={"Content-Type": manifest["mediaType"]})
        return "sha256:" + hashlib.sha256(body).hexdigest()


def image_config(env: list[str], cmd: list[str], entrypoint: list[str] | None = None, workdir: str = "/",
                 created: str = "2026-01-01T00:00:00Z") -> dict:
    cfg: dict = {"Env": env, "Cmd": cmd, "WorkingDir": workdir}
    if entrypoint:
        cfg["Entrypoint"] = entrypoint
    return {"architecture": "amd64", "os": "linux", "created": created, "config": cfg,
            "history": [{"created": created, "created_by": "hpcctl sandbox"}]}
