"""Two Debian `docker-registry` instances on loopback: an open one and one behind htpasswd basic auth."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

from hpcctl.sandbox import layout as L
from hpcctl.sandbox.daemons import Daemon, StepFailed
from hpcctl.sandbox.slurm_conf import write_if_changed

CONFIG_DIR = L.STATE_DIR / "registry-config"
HTPASSWD = CONFIG_DIR / "htpasswd"
REGISTRIES = (("registry", L.REGISTRY, False), ("registry-auth", L.AUTH_REGISTRY, True))


def _config(addr: str, storage: str, auth: bool) -> str:
    text = f"""\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {addr}
"""
    if auth:
        text += f"auth:\n  htpasswd:\n    realm: hpcctl-sandbox\n    path: {HTPASSWD}\n"
    return text


def daemons() -> list[Daemon]:
    return [Daemon(name, ("/usr/bin/docker-registry", "serve", str(CONFIG_DIR / f"{name}.yml")),
                   L.RUN_DIR / f"{name}.pid", L.log(name), foreground=True) for name, _, _ in REGISTRIES]


def write_configs() -> None:
    if not HTPASSWD.exists():
        result = subprocess.run(["htpasswd", "-Bbn", L.AUTH_USER, L.AUTH_PASSWORD], capture_output=True, text=True)
        if result.returncode:
            raise StepFailed("registry", f"htpasswd failed: {result.stderr.strip()}")
        write_if_changed(HTPASSWD, result.stdout, 0o600)
    for name, addr, auth in REGISTRIES:
        storage = L.STATE_DIR / name
        storage.mkdir(parents=True, exist_ok=True)
        write_if_changed(CONFIG_DIR / f"{name}.yml", _config(addr, str(storage), auth))


def answers(addr: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{addr}/v2/", timeout=2)
        return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
