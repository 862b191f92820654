"""A small in-process OCI registry for unit tests of failure paths the real sandbox registry cannot produce on
demand: 5xx and 429 answers, connection resets mid-blob, token auth, wrong digests."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from dataclasses import dataclass, field

from image_layers import e, gz_layer


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    manifests: dict = field(default_factory=dict)  # (repo, ref) -> (media type, body)
    blobs: dict = field(default_factory=dict)  # digest -> bytes
    fail_next: list = field(default_factory=list)  # statuses to answer before serving normally
    reset_blob_after: int | None = None  # close the connection after this many bytes, once
    auth: str | None = None  # None, "basic" or "bearer"
    user: str = "alice"
    password: str = "secret"
    corrupt: set = field(default_factory=set)  # digests served with a flipped byte
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
                if registry.auth == "bearer":
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
                    if self.headers.get("Authorization") != good:
                        return self._send(401)
                    return self._send(200, json.dumps({"token": "good-token"}).encode())
                if registry.fail_next:
                    status = registry.fail_next.pop(0)
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


def push(reg: FakeRegistry, repo: str, tag: str, layers_bottom_up: list, env=("PATH=/bin",)) -> str:
    descriptors, diff_ids = [], []
    for entries in layers_bottom_up:
        blob, digest, diff_id = gz_layer(entries)
        reg.blobs[digest] = blob
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
                            "size": len(blob)})
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": list(env), "Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_digest = reg.add_blob(config)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                           "size": len(config)},
                "layers": descriptors}
    return reg.add_manifest(repo, tag, manifest, OCI_MANIFEST)


SMALL = [[e("bin", "dir"), e("bin/sh", data=b"#!shell", mode=0o755), e("etc", "dir"),
          e("etc/motd", data=b"hello")],
         [e("etc", "dir"), e("etc/.wh.motd"), e("etc/os-release", data=b"ID=test\n")]]
