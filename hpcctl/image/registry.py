"""A client for the OCI distribution API: manifests and blobs, token and basic auth, retries, mirrors.

Plain HTTP only for hosts the site config lists as insecure; mirrors only as the site config names them.
Every manifest and blob is checked against its digest; blobs while they stream to disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import platform
import random
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

import requests
import urllib3

from hpcctl.image.credentials import Credentials
from hpcctl.image.errors import AuthDenied, DigestMismatch, NotFound, RegistryError, RegistryUnreachable
from hpcctl.image.reference import ImageRef

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
RETRY_STATUS = {429, 500, 502, 503, 504}
CHUNK = 1 << 20
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}



MANIFEST_MAX_BYTES = 4 << 20
TOKEN_MAX_BYTES = 1 << 20


def bounded_body(resp: requests.Response, limit: int) -> bytes | None:
    """The body of a streamed response, read only up to ``limit`` bytes; None when it is longer (a registry's
    claims are not trusted, so nothing is read past what a valid answer can need)."""
    chunks, size = [], 0
    for chunk in resp.iter_content(1 << 16):
        size += len(chunk)
        if size > limit:
            resp.close()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def host_platform() -> tuple[str, str]:
    return "linux", _ARCH.get(platform.machine(), platform.machine())


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Manifest:
    digest: str  # of the top-level document the reference points to (an index for multi-arch images)
    manifest_digest: str  # of the single-platform manifest
    config: dict  # its config descriptor
    layers: list[dict]
    auth_required: bool  # the registry wanted credentials for it


@dataclass
class RegistryConfigView:
    """What the client needs from the site config (kept small so tests can build one)."""

    insecure: tuple[str, ...] = ()
    mirrors: dict = field(default_factory=dict)
    timeout_s: float = 30.0
    retries: int = 4


class Registry:
    """One registry (plus its mirrors) seen with one user's credentials. Counts the HTTP requests it makes.
    ``actions``: what its tokens ask for, "pull" or "pull,push" (pushes go to the registry itself, never a mirror)."""

    def __init__(self, ref: ImageRef, settings: RegistryConfigView,
                 credentials: Credentials | Callable[[], Credentials | None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, actions: str = "pull"):
        self.ref = ref
        self.actions = actions
        self.settings = settings
        self._credentials = credentials
        self.sleep = sleep
        self.requests = 0
        self.auth_required = False
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "hpcctl"
        self._auth: dict[str, str] = {}
        hosts = [*settings.mirrors.get(ref.registry, ()), ref.registry]
        self.endpoints = [self._base(h) for h in hosts]

    def _base(self, host: str) -> str:
        api_host = "registry-1.docker.io" if host == "docker.io" else host
        scheme = "http" if host in self.settings.insecure else "https"
        return f"{scheme}://{api_host}/v2"

    @property
    def credentials(self) -> Credentials | None:
        """Looked up on the first auth challenge only: public images never read the user's files."""
        if callable(self._credentials):
            self._credentials = self._credentials()
        return self._credentials

    # --- transport -------------------------------------------------------------------------------------------
    def _send(self, method: str, url: str, headers: dict, stream: bool, data=None) -> requests.Response:
        """One request with retries on resets, timeouts, 429 and 5xx (exponential backoff, Retry-After); a file
        ``data`` is sent again from its start on each try."""
        attempt = 0
        while True:
            self.requests += 1
            if hasattr(data, "seek"):
                data.seek(0)
            try:
                resp = self.session.request(method, url, headers=headers, stream=stream, data=data,
                                            timeout=(min(10.0, self.settings.timeout_s), self.settings.timeout_s),
                                            allow_redirects=True)
            except requests.exceptions.SSLError:
                raise RegistryUnreachable(
                    f"cannot reach registry {url.split('/')[2]}: TLS handshake failed",
                    "list it under registries.insecure in the site config if it serves plain HTTP; otherwise "
                    "check its certificate") from None
            except requests.RequestException as exc:
                if attempt >= self.settings.retries:
                    host = url.split("/")[2]
                    raise RegistryUnreachable(
                        f"cannot reach registry {host}: {_reason(exc)}",
                        "check that it is up and reachable from this node, or configure a mirror") from None
                self.sleep(_backoff(attempt, None))
                attempt += 1
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.settings.retries:
                retry_after = resp.headers.get("Retry-After")
                resp.close()
                self.sleep(_backoff(attempt, retry_after))
                attempt += 1
                continue
            return resp

    def _request(self, method: str, path: str, headers: dict | None = None, stream: bool = False,
                 base: str | None = None, data=None, url: str | None = None) -> requests.Response:
        """``path`` under the repository at ``base`` (default: the registry itself), or the absolute ``url`` there
        (an upload location)."""
        base = base or self.endpoints[-1]
        url = url or f"{base}/{self.ref.repository}/{path}"
        headers = dict(headers or {})
        if base in self._auth:
            headers["Authorization"] = self._auth[base]
        resp = self._send(method, url, headers, stream, data)
        if resp.status_code == 401 and base not in self._auth:
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            self._auth[base] = self._authorize(base, challenge)
            headers["Authorization"] = self._auth[base]
            resp = self._send(method, url, headers, stream, data)
        if resp.status_code in (401, 403):
            resp.close()
            raise self._denied(base)
        return resp

    def _authorize(self, base: str, challenge: str) -> str:
        self.auth_required = True
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.credentials:
                raise self._denied(base)
            return _basic(self.credentials)
        if scheme.lower() != "bearer":
            raise RegistryError(f"registry {base.split('/')[2]} asks for unsupported auth '{scheme or 'none'}'")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.get("realm")
        if not realm:
            raise RegistryError(f"registry {base.split('/')[2]} sent a Bearer challenge without a realm")
        query = {"scope": f"repository:{self.ref.repository}:{self.actions}"}
        if fields.get("service"):
            query["service"] = fields["service"]
        headers = {"Authorization": _basic(self.credentials)} if self.credentials else {}
        attempt = 0
        while True:
            self.requests += 1
            try:
                resp = self.session.get(realm, params=query, headers=headers, timeout=self.settings.timeout_s,
                                        stream=True)
            except requests.RequestException as exc:
                if attempt >= self.settings.retries:
                    raise RegistryUnreachable(f"cannot reach the token service {realm}: {_reason(exc)}",
                                              "check that it is reachable from this node") from None
                self.sleep(_backoff(attempt, None))
                attempt += 1
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.settings.retries:
                self.sleep(_backoff(attempt, resp.headers.get("Retry-After")))
                attempt += 1
                continue
            break
        if resp.status_code in (401, 403):
            raise self._denied(base)
        if resp.status_code != 200:
            raise RegistryError(f"token service {realm} answered HTTP {resp.status_code}")
        raw = bounded_body(resp, TOKEN_MAX_BYTES)
        try:
            body = json.loads(raw) if raw is not None else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RegistryError(f"token service {realm} sent no valid token reply (not JSON, or over 1 MiB)")
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service {realm} sent no token")
        return f"Bearer {token}"

    def _denied(self, base: str) -> AuthDenied:
        host = base.split("/")[2]
        if self.credentials:
            return AuthDenied(f"registry {host} refused the credentials of '{self.credentials.username}' "
                              f"(from {self.credentials.source}) for {self.ref.repository}",
                              "check the login and password, and that this account may pull the image")
        return AuthDenied(f"registry {host} needs credentials for {self.ref.repository} and none were found",
                          "add them to ~/.config/enroot/.credentials (machine HOST login USER password PASS) "
                          "or log in with docker login")

    def _not_found(self, what: str) -> NotFound:
        return NotFound(f"{what} not found in registry {self.ref.registry}",
                        "check the image name and tag (or digest)")

    # --- manifests -------------------------------------------------------------------------------------------
    def _with_mirrors(self, call):
        """Try the mirrors in order, then the registry itself; a mirror's failure is never final."""
        for base in self.endpoints[:-1]:
            try:
                return call(base)
            except (RegistryUnreachable, RegistryError, NotFound, AuthDenied):
                continue
        return call(self.endpoints[-1])

    def head_digest(self, reference: str) -> str | None:
        """The digest a tag points to, from one HEAD request; None when the registry does not say."""
        def call(base):
            resp = self._request("HEAD", f"manifests/{reference}", {"Accept": ", ".join(MANIFEST_TYPES)},
                                 base=base)
            resp.close()
            if resp.status_code == 404:
                raise self._not_found(f"{self.ref.repository}:{reference}")
            if resp.status_code != 200:
                raise RegistryError(f"registry {self.ref.registry} answered HTTP {resp.status_code} "
                                    f"for {self.ref.repository}:{reference}")
            return resp.headers.get("Docker-Content-Digest")
        return self._with_mirrors(call)

    def get_manifest_bytes(self, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index; checked against ``reference`` when it is a digest."""
        def call(base):
            resp = self._request("GET", f"manifests/{reference}", {"Accept": ", ".join(MANIFEST_TYPES)}, stream=True,
                                 base=base)
            with resp:
                if resp.status_code == 404:
                    raise self._not_found(f"{self.ref.repository}:{reference}" if ":" not in reference
                                          else f"{self.ref.repository}@{reference}")
                if resp.status_code != 200:
                    raise RegistryError(f"registry {self.ref.registry} answered HTTP {resp.status_code} "
                                        f"for manifest {self.ref.repository}:{reference}")
                body = bounded_body(resp, MANIFEST_MAX_BYTES)
            if body is None:
                raise RegistryError(f"manifest of {self.ref.repository} is larger than 4 MiB")
            digest = sha256_digest(body)
            if reference.startswith("sha256:") and digest != reference:
                raise DigestMismatch(f"manifest {reference} from {self.ref.registry} hashes to {digest}",
                                     "the registry or a proxy altered it; try again or use another mirror")
            try:
                media_type = json.loads(body).get("mediaType") or resp.headers.get("Content-Type", "")
            except ValueError:
                raise RegistryError(f"manifest of {self.ref.repository} from {self.ref.registry} is not JSON") \
                    from None
            return body, media_type.split(";")[0].strip(), digest
        return self._with_mirrors(call)

    def manifest(self, reference: str, os_arch: tuple[str, str] | None = None) -> Manifest:
        """The single-platform manifest for ``reference`` (a tag or digest), choosing this host's platform."""
        body, media_type, digest = self.get_manifest_bytes(reference)
        doc = json.loads(body)
        manifest_digest = digest
        if media_type in INDEX_TYPES or "manifests" in doc:
            want_os, want_arch = os_arch or host_platform()
            chosen = _pick_platform(doc.get("manifests", []), want_os, want_arch)
            if not chosen:
                offered = ", ".join(f"{m.get('platform', {}).get('os')}/{m.get('platform', {}).get('architecture')}"
                                    for m in doc.get("manifests", []))
                raise NotFound(f"{self.ref.repository} has no image for {want_os}/{want_arch} (it has: {offered})",
                               "use an image built for this platform")
            body, media_type, manifest_digest = self.get_manifest_bytes(chosen["digest"])
            doc = json.loads(body)
        if doc.get("schemaVersion") != 2 or "layers" not in doc or "config" not in doc:
            raise RegistryError(f"{self.ref.repository}: unsupported manifest type '{media_type}'",
                                "only Docker v2 schema 2 and OCI manifests are supported")
        return Manifest(digest, manifest_digest, doc["config"], doc["layers"], self.auth_required)

    # --- blobs -----------------------------------------------------------------------------------------------
    def get_blob_bytes(self, digest: str, limit: int = 16 << 20) -> bytes:
        def call(base):
            resp = self._request("GET", f"blobs/{digest}", stream=True, base=base)
            with resp:
                if resp.status_code == 404:
                    raise self._not_found(f"blob {digest} of {self.ref.repository}")
                if resp.status_code != 200:
                    raise RegistryError(f"registry {self.ref.registry} answered HTTP {resp.status_code} "
                                        f"for blob {digest}")
                data = resp.raw.read(limit + 1, decode_content=True)
            if len(data) > limit:
                raise RegistryError(f"blob {digest} of {self.ref.repository} is larger than expected")
            if sha256_digest(data) != digest:
                raise DigestMismatch(f"blob {digest} from {self.ref.registry} hashes to {sha256_digest(data)}",
                                     "the registry or a proxy altered it; try again")
            return data
        return self._with_mirrors(call)

    def download_blob(self, digest: str, size: int | None, out: BinaryIO,
                      progress: Callable[[int], None] = lambda n: None) -> None:
        """Stream a blob into ``out``, hashing as it goes; resumes with Range after a reset. Raises
        DigestMismatch (and leaves ``out`` to the caller to discard) when the bytes do not match."""
        if not digest.startswith("sha256:"):
            raise RegistryError(f"blob digest '{digest}' uses an unsupported algorithm", "only sha256 is supported")
        hasher = hashlib.sha256()
        written = 0
        attempt = 0
        bases = list(self.endpoints)
        while True:
            headers = {"Range": f"bytes={written}-"} if written else {}
            try:
                base = bases[0]
                resp = self._request("GET", f"blobs/{digest}", headers, stream=True, base=base)
            except (RegistryUnreachable, AuthDenied, RegistryError):
                if len(bases) > 1:
                    bases.pop(0)
                    continue
                raise
            with resp:
                if resp.status_code == 404 and len(bases) > 1:
                    bases.pop(0)
                    continue
                if resp.status_code == 404:
                    raise self._not_found(f"blob {digest} of {self.ref.repository}")
                if resp.status_code == 200 and written:
                    out.seek(0)
                    out.truncate()
                    hasher, written = hashlib.sha256(), 0
                elif resp.status_code not in (200, 206):
                    raise RegistryError(f"registry {base.split('/')[2]} answered HTTP {resp.status_code} "
                                        f"for blob {digest}")
                try:
                    for chunk in resp.raw.stream(CHUNK, decode_content=False):
                        hasher.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                        progress(len(chunk))
                        if size is not None and written > size:
                            break
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    if attempt >= self.settings.retries:
                        raise RegistryUnreachable(f"download of {digest} from {self.ref.registry} kept failing: "
                                                  f"{_reason(exc)}", "check the network and try again") from None
                    self.sleep(_backoff(attempt, None))
                    attempt += 1
                    continue
            break
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest or (size is not None and written != size):
            raise DigestMismatch(f"layer {digest} from {self.ref.registry} arrived as {written} bytes hashing to "
                                 f"{actual}", "the registry or a proxy altered it; try again")


    # --- pushing (a Registry made with actions="pull,push") ------------------------------------------------------
    def push_blob(self, digest: str, size: int, source: BinaryIO) -> None:
        """Upload ``size`` bytes of ``source`` as blob ``digest`` in one PUT (the registry checks the digest);
        nothing is sent when the registry already has it."""
        resp = self._request("HEAD", f"blobs/{digest}")
        resp.close()
        if resp.status_code == 200:
            return
        resp = self._request("POST", "blobs/uploads/")
        resp.close()
        location = resp.headers.get("Location")
        if resp.status_code != 202 or not location:
            raise RegistryError(f"registry {self.ref.registry} answered HTTP {resp.status_code} to starting an "
                                f"upload to {self.ref.repository}", "check that this account may push there")
        url = urllib.parse.urljoin(self.endpoints[-1] + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        resp = self._request("PUT", "", {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                             data=source, url=url)
        resp.close()
        if resp.status_code != 201:
            raise RegistryError(f"registry {self.ref.registry} answered HTTP {resp.status_code} to the upload of "
                                f"{digest}", "push again; the registry may have refused the digest or the size")

    def put_manifest(self, tag: str, body: bytes, media_type: str) -> str:
        """Store ``body`` as the manifest ``tag`` points to; returns its digest."""
        resp = self._request("PUT", f"manifests/{tag}", {"Content-Type": media_type}, data=body)
        resp.close()
        if resp.status_code not in (200, 201):
            raise RegistryError(f"registry {self.ref.registry} answered HTTP {resp.status_code} to the manifest of "
                                f"{self.ref.repository}:{tag}", "check that the registry accepts OCI artifacts")
        return sha256_digest(body)


def _pick_platform(manifests: list[dict], want_os: str, want_arch: str) -> dict | None:
    candidates = [m for m in manifests if m.get("platform", {}).get("os") == want_os
                  and m.get("platform", {}).get("architecture") == want_arch]
    if want_arch == "arm64":
        candidates.sort(key=lambda m: m["platform"].get("variant") not in (None, "v8"))
    return candidates[0] if candidates else None


def _basic(credentials: Credentials) -> str:
    import base64
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    return f"Basic {token}"


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), 60.0)
    return min(0.5 * 2 ** attempt, 8.0) * random.uniform(0.5, 1.0)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for known in ("Connection refused", "timed out", "Name or service not known", "Connection reset",
                  "No route to host", "certificate verify failed", "Temporary failure in name resolution"):
        if known in text:
            return known.lower()
    return type(exc).__name__
