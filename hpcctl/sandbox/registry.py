"""The sandbox's registries on loopback: Debian's `docker-registry`, an open one and one behind htpasswd basic auth,
and a pull-through mirror in front of the open one, each with its own storage and access log; and what a registry's
access log says it served (blob GETs and bytes), which tests and benchmarks count.

The mirror is nginx caching the open registry's blobs (content-addressed, so kept for good) with
`proxy_cache_lock`: however many nodes ask for a blob at once, the upstream serves it once. Debian's docker-registry
2.8 in proxy mode cannot: its proxy blob store fetches a blob it lacks once for the client and once more for its own
storage, and again for every client asking meanwhile. Manifests (tags move) always go to the upstream."""

from __future__ import annotations

import hashlib
import re
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hpcctl.sandbox import layout as L
from hpcctl.sandbox.daemons import Daemon, StepFailed
from hpcctl.sandbox.slurm_conf import write_if_changed

CONFIG_DIR = L.STATE_DIR / "registry-config"
HTPASSWD = CONFIG_DIR / "htpasswd"


@dataclass(frozen=True)
class Served:
    name: str  # daemon, log (LOG_DIR/NAME.log) and storage (STATE_DIR/NAME) name
    addr: str
    auth: bool = False
    upstream: str | None = None  # a mirror: the registry it pulls through from


REGISTRIES = (Served("registry", L.REGISTRY), Served("registry-auth", L.AUTH_REGISTRY, auth=True),
              Served("registry-mirror", L.MIRROR, upstream=L.REGISTRY))
MIRROR_CACHE = L.STATE_DIR / "registry-mirror"  # nginx's cache: one file per blob, named by md5 of the blob's URI


def _config(served: Served) -> str:
    text = f"""\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {L.STATE_DIR / served.name}
  delete:
    enabled: true
http:
  addr: {served.addr}
"""
    if served.auth:
        text += f"auth:\n  htpasswd:\n    realm: hpcctl-sandbox\n    path: {HTPASSWD}\n"
    return text


def _mirror_config(served: Served) -> str:
    """nginx as a pull-through blob cache. The cache key is the URI alone: right for a public upstream only (in
    front of a registry with credentials, add $http_authorization to the key so each credential is asked once)."""
    state = L.STATE_DIR / f"{served.name}-nginx"
    return f"""\
daemon off;
master_process off;
pid {L.RUN_DIR / f"{served.name}.nginx.pid"};
error_log {L.LOG_DIR / f"{served.name}.error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log {L.log(served.name)} combined;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    proxy_cache_path {MIRROR_CACHE} levels=1:2 keys_zone=blobs:10m max_size=50g inactive=30d use_temp_path=off;
    client_max_body_size 0;
    server {{
        listen {served.addr};
        location ~ "^/v2/.+/blobs/sha256:[0-9a-f]{{64}}$" {{
            proxy_pass http://{served.upstream};
            proxy_cache blobs;
            proxy_cache_key $uri;
            proxy_cache_valid 200 30d;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 1h;
            proxy_cache_lock_age 1h;
            proxy_read_timeout 1h;
        }}
        location / {{
            proxy_pass http://{served.upstream};
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def mirror_cache_file(repository: str, blob: str) -> Path:
    """Where the mirror keeps ``blob`` of ``repository`` (nginx, levels=1:2: the md5 of the key, the URI)."""
    key = hashlib.md5(f"/v2/{repository}/blobs/{blob}".encode()).hexdigest()
    return MIRROR_CACHE / key[-1] / key[-3:-1] / key


def _config_file(served: Served) -> Path:
    return CONFIG_DIR / (f"{served.name}.nginx.conf" if served.upstream else f"{served.name}.yml")


def daemons() -> list[Daemon]:
    """One per entry of REGISTRIES, in that order (the mirror's log is nginx's access log; its own output goes
    beside it)."""
    return [Daemon(s.name, ("/usr/sbin/nginx", "-c", str(_config_file(s))), L.RUN_DIR / f"{s.name}.pid",
                   L.LOG_DIR / f"{s.name}.out.log", foreground=True) if s.upstream else
            Daemon(s.name, ("/usr/bin/docker-registry", "serve", str(_config_file(s))), L.RUN_DIR / f"{s.name}.pid",
                   L.log(s.name), foreground=True) for s in REGISTRIES]


def write_configs() -> None:
    if not HTPASSWD.exists():
        result = subprocess.run(["htpasswd", "-Bbn", L.AUTH_USER, L.AUTH_PASSWORD], capture_output=True, text=True)
        if result.returncode:
            raise StepFailed("registry", f"htpasswd failed: {result.stderr.strip()}")
        write_if_changed(HTPASSWD, result.stdout, 0o600)
    for served in REGISTRIES:
        (L.STATE_DIR / served.name).mkdir(parents=True, exist_ok=True)
        if served.upstream:
            for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (L.STATE_DIR / f"{served.name}-nginx" / sub).mkdir(parents=True, exist_ok=True)
        write_if_changed(_config_file(served), _mirror_config(served) if served.upstream else _config(served))


def answers(addr: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{addr}/v2/", timeout=2)
        return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


# an access log line: 127.0.0.1 - - [date] "GET /v2/REPO/blobs/sha256:HEX HTTP/1.1" 200 BYTES "referer" "agent"
_BLOB_GET = re.compile(r'"GET /v2/(?P<repo>\S+)/blobs/(?P<digest>sha256:[0-9a-f]{64}) HTTP/[\d.]+" '
                       r'(?P<status>\d{3}) (?P<bytes>\d+)')


@dataclass(frozen=True)
class BlobTraffic:
    """Blob GETs a registry answered with content (200, 206), per digest, and the bytes it sent for them."""

    gets: Counter
    bytes: int

    @property
    def total(self) -> int:
        return sum(self.gets.values())


def log_offset(name: str) -> int:
    """Where registry ``name``'s log ends now: pass it to blob_traffic as ``since`` to count what comes after."""
    try:
        return L.log(name).stat().st_size
    except FileNotFoundError:
        return 0


def blob_traffic(name: str, since: int = 0, repository: str | None = None) -> BlobTraffic:
    """What registry ``name`` (registry, registry-auth, registry-mirror) served from log offset ``since`` on,
    optionally of one repository only."""
    gets: Counter = Counter()
    sent = 0
    try:
        with open(L.log(name), "rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        text = ""
    for match in _BLOB_GET.finditer(text):
        if match["status"] in ("200", "206") and repository in (None, match["repo"]):
            gets[match["digest"]] += 1
            sent += int(match["bytes"])
    return BlobTraffic(gets, sent)
