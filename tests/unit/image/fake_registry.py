"""A small in-process OCI registry for unit tests of failure paths the real sandbox registry cannot produce on
demand: 5xx and 429 answers, connection resets, a registry that never answers, token auth, wrong digests."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field

from image_layers import e, gz_layer, tar_bytes


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    manifests: dict = field(default_factory=dict)  # (repo, ref) -> (media type, body)
    blobs: dict = field(default_factory=dict)  # digest -> bytes
    fail_next: list = field(default_factory=list)  # statuses (or "reset": close without answering) to answer first
    reset_blob_after: int | None = None  # close the connection after this many bytes, once
    auth: str | None = None  # None, "basic", "bearer" or "bearer-anonymous" (tokens for anyone, as Docker Hub)
    stall_s: float = 0.0  # wait this long before answering a manifest request
    user: str = "alice"
    password: str = "secret"
    corrupt: set = field(default_factory=set)  # digests served with a flipped byte
    fail_puts: list = field(default_factory=list)  # statuses to answer PUTs (upload ends, manifests) with first
    log: list = field(default_factory=list)

    def add_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        return digest

    def add_manifest(self, repo: str, tag: str, doc: dict, media_type: str) -> str:
        body = json.dumps(doc).encode()
        digest = digest_of(body)
        self.manifests[(repo, tag)] = (media_type, body)
        self.manifests[(repo, digest)] = (media_type, body)
        return digest

    def start(self) -> "FakeRegistry":
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization", "")
                if registry.auth == "basic":
                    good = "Basic " + base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
                    return header == good
                if registry.auth in ("bearer", "bearer-anonymous"):
                    return header == "Bearer good-token"
                return True

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head: bool = False):
                registry.log.append((self.command, self.path))
                if self.path.startswith("/token"):
                    good = "Basic " + base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
                    sent = self.headers.get("Authorization")
                    if sent != good and not (registry.auth == "bearer-anonymous" and sent is None):
                        return self._send(401)
                    return self._send(200, json.dumps({"token": "good-token"}).encode())
                if registry.fail_next:
                    status = registry.fail_next.pop(0)
                    if status == "reset":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    return self._send(status, headers={"Retry-After": "0"} if status == 429 else {}, head=head)
                if not self._authorized():
                    host = self.headers["Host"]
                    challenge = ('Basic realm="fake"' if registry.auth == "basic" else
                                 f'Bearer realm="http://{host}/token",service="fake"')
                    return self._send(401, headers={"WWW-Authenticate": challenge}, head=head)
                parts = self.path.split("/")
                kind_index = max(i for i, p in enumerate(parts) if p in ("manifests", "blobs"))
                repo, kind, ref = "/".join(parts[2:kind_index]), parts[kind_index], parts[kind_index + 1]
                if kind == "manifests":
                    time.sleep(registry.stall_s)
                    if (repo, ref) not in registry.manifests:
                        return self._send(404, head=head)
                    media_type, body = registry.manifests[(repo, ref)]
                    return self._send(200, body, {"Content-Type": media_type,
                                                  "Docker-Content-Digest": digest_of(body)}, head=head)
                if ref not in registry.blobs:
                    return self._send(404, head=head)
                data = registry.blobs[ref]
                if ref in registry.corrupt:
                    data = bytes([data[0] ^ 1]) + data[1:]
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                status = 206 if start else 200
                body = data[start:]
                if registry.reset_blob_after is not None and not start:
                    cut = registry.reset_blob_after
                    registry.reset_blob_after = None
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                return self._send(status, body, head=head)

            def _upload_prologue(self) -> bool:
                """Log, answer a queued failure or an auth challenge (draining the body); True to go on."""
                registry.log.append((self.command, self.path))
                body_length = int(self.headers.get("Content-Length") or 0)
                self.upload = self.rfile.read(body_length) if body_length else b""
                failures = registry.fail_puts if self.command == "PUT" else registry.fail_next
                if failures:
                    self._send(failures.pop(0))
                    return False
                if not self._authorized():
                    host = self.headers["Host"]
                    challenge = ('Basic realm="fake"' if registry.auth == "basic" else
                                 f'Bearer realm="http://{host}/token",service="fake"')
                    self._send(401, headers={"WWW-Authenticate": challenge})
                    return False
                return True

            def do_POST(self):  # start a blob upload: /v2/REPO/blobs/uploads/
                if self._upload_prologue():
                    self._send(202, headers={"Location": f"/upload/{len(registry.log)}?state=x"})

            def do_PUT(self):  # finish an upload (/upload/N?state=x&digest=D) or store a manifest
                if not self._upload_prologue():
                    return
                if self.path.startswith("/upload/"):
                    digest = self.path.split("digest=", 1)[1].replace("%3A", ":")
                    if digest_of(self.upload) != digest:
                        return self._send(400)
                    registry.blobs[digest] = self.upload
                    return self._send(201)
                parts = self.path.split("/")
                repo, tag = "/".join(parts[2:-2]), parts[-1]
                registry.manifests[(repo, tag)] = (self.headers["Content-Type"], self.upload)
                registry.manifests[(repo, digest_of(self.upload))] = (self.headers["Content-Type"], self.upload)
                return self._send(201)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, kind: str) -> int:
        return sum(1 for _, path in self.log if f"/{kind}/" in path)


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER_TYPES = {  # compression -> (OCI, Docker) layer media type
    "gzip": ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    "zstd": ("application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.docker.image.rootfs.diff.tar.zstd"),
    "none": ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"),
}


def layer_blob(entries: list, compression: str) -> tuple[bytes, str]:
    """(blob, diff_id) of one layer compressed with gzip, zstd or not at all."""
    raw = tar_bytes(entries)
    blob = {"gzip": lambda: gz_layer(entries)[0], "none": lambda: raw,
            "zstd": lambda: subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True).stdout}
    return blob[compression](), digest_of(raw)


def push(reg: FakeRegistry, repo: str, tag: str, layers_bottom_up: list, env=("PATH=/bin",),
         compressions: tuple[str, ...] = (), docker: bool = False) -> str:
    """Push an image; layer i is compressed with ``compressions[i]`` (default gzip); ``docker``: Docker v2 schema 2
    media types instead of OCI's. Returns the manifest digest."""
    descriptors, diff_ids = [], []
    for number, entries in enumerate(layers_bottom_up):
        compression = compressions[number] if number < len(compressions) else "gzip"
        blob, diff_id = layer_blob(entries, compression)
        descriptors.append({"mediaType": LAYER_TYPES[compression][docker], "digest": reg.add_blob(blob),
                            "size": len(blob)})
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": list(env), "Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    config_type = "application/vnd.docker.container.image.v1+json" if docker else \
        "application/vnd.oci.image.config.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": media_type,
                "config": {"mediaType": config_type, "digest": reg.add_blob(config), "size": len(config)},
                "layers": descriptors}
    return reg.add_manifest(repo, tag, manifest, media_type)


SMALL = [[e("bin", "dir"), e("bin/sh", data=b"#!shell", mode=0o755), e("etc", "dir"),
          e("etc/motd", data=b"hello")],
         [e("etc", "dir"), e("etc/.wh.motd"), e("etc/os-release", data=b"ID=test\n")]]
