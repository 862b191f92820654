"""The sandbox's Debian `docker-registry` instances on loopback: an open one, one behind htpasswd basic auth, and a
pull-through mirror (proxy mode) in front of the open one, each with its own storage and access log; and what a
registry's access log says it served (blob GETs and bytes), which tests and benchmarks count."""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass

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
    if served.upstream:
        text += f"proxy:\n  remoteurl: http://{served.upstream}\n"
    return text


def daemons() -> list[Daemon]:
    return [Daemon(s.name, ("/usr/bin/docker-registry", "serve", str(CONFIG_DIR / f"{s.name}.yml")),
                   L.RUN_DIR / f"{s.name}.pid", L.log(s.name), foreground=True) for s in REGISTRIES]


def write_configs() -> None:
    if not HTPASSWD.exists():
        result = subprocess.run(["htpasswd", "-Bbn", L.AUTH_USER, L.AUTH_PASSWORD], capture_output=True, text=True)
        if result.returncode:
            raise StepFailed("registry", f"htpasswd failed: {result.stderr.strip()}")
        write_if_changed(HTPASSWD, result.stdout, 0o600)
    for served in REGISTRIES:
        (L.STATE_DIR / served.name).mkdir(parents=True, exist_ok=True)
        write_if_changed(CONFIG_DIR / f"{served.name}.yml", _config(served))


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
