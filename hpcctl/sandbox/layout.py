"""Where the sandbox keeps its files, and its shape: N slurmd nodes (2 by default; `sandbox up --nodes N`, remembered
in SETTINGS_FILE), the first two with two fake GPUs each, two registries and a pull-through mirror."""

from __future__ import annotations

import json
import socket
from pathlib import Path

STATE_DIR = Path("/var/lib/hpcctl-sandbox")
LOG_DIR = Path("/var/log/hpcctl-sandbox")
RUN_DIR = Path("/run/hpcctl-sandbox")
BUILD_CACHE = Path("/var/cache/hpcctl-sandbox")
SLURM_ETC = Path("/etc/slurm")
SITE_FILE = Path("/etc/hpcctl/site.yaml")
PLUGIN_SO = Path("/usr/local/lib/hpcctl/hpcctl_spank.so")
STATE_FILE = STATE_DIR / "started.json"
SETTINGS_FILE = STATE_DIR / "settings.json"

DEFAULT_NODES = 2
MAX_NODES = 64
FIRST_PORT = 17001
GPU_NODES = ("n1", "n2")  # the `debug` partition: the default one, with the fake GPUs
GPUS_PER_NODE = 2
GPU_TYPE = "fake"
FAKE_GPU_DIR = Path("/dev/fakegpu")
NODE_CPUS = 4
NODE_MEMORY_MB = 8000
PARTITION = "debug"
SCALE_PARTITION = "scale"  # every node: many-node jobs run here without taking the GPU nodes' partition

TEST_USER = "hpcuser"
TEST_UID = 2001
OTHER_USER = "hpcother"  # a second user: other users' jobs in the queue
OTHER_UID = 2002
STORE_USER = "hpcctl-store"  # the shared image store's service account (cache.shared.owner)
STORE_UID = 2900
SHARED_STORE = STATE_DIR / "shared-store"  # the shared image store: one directory every sandbox node sees
SHARED_SITE_FILE = Path("/etc/hpcctl/site-shared.yaml")  # the sandbox's site config with cache.shared

REGISTRY = "127.0.0.1:5000"
AUTH_REGISTRY = "127.0.0.1:5001"
AUTH_USER = "sandbox"
AUTH_PASSWORD = "sandbox-secret"
MIRROR = "127.0.0.1:5002"  # a pull-through blob cache (nginx) in front of REGISTRY


def host() -> str:
    return socket.gethostname().split(".")[0]


def log(name: str) -> Path:
    return LOG_DIR / f"{name}.log"


def node_count() -> int:
    """How many nodes the sandbox has: the count the last `sandbox up --nodes N` recorded, else DEFAULT_NODES."""
    try:
        count = json.loads(SETTINGS_FILE.read_text())["nodes"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_NODES
    return count if isinstance(count, int) and len(GPU_NODES) <= count <= MAX_NODES else DEFAULT_NODES


def remember_node_count(count: int) -> None:
    SETTINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = SETTINGS_FILE.with_name(f".{SETTINGS_FILE.name}.tmp")
    tmp.write_text(json.dumps({"nodes": count}))
    tmp.replace(SETTINGS_FILE)


def nodes(count: int | None = None) -> tuple[str, ...]:
    return tuple(f"n{i}" for i in range(1, (count or node_count()) + 1))


def node_port(node: str) -> int:
    return FIRST_PORT + int(node[1:]) - 1


def gpu_devices(node: str) -> list[Path]:
    first = GPU_NODES.index(node) * GPUS_PER_NODE
    return [FAKE_GPU_DIR / f"nvidia{first + i}" for i in range(GPUS_PER_NODE)]
