"""Where the sandbox keeps its files, and its fixed shape: two nodes, two fake GPUs each, two registries."""

from __future__ import annotations

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

NODES = ("n1", "n2")
NODE_PORTS = {"n1": 17001, "n2": 17002}
GPUS_PER_NODE = 2
GPU_TYPE = "fake"
FAKE_GPU_DIR = Path("/dev/fakegpu")
NODE_CPUS = 4
NODE_MEMORY_MB = 8000
PARTITION = "debug"

TEST_USER = "hpcuser"
TEST_UID = 2001
OTHER_USER = "hpcother"  # a second user: other users' jobs in the queue
OTHER_UID = 2002

REGISTRY = "127.0.0.1:5000"
AUTH_REGISTRY = "127.0.0.1:5001"
AUTH_USER = "sandbox"
AUTH_PASSWORD = "sandbox-secret"


def host() -> str:
    return socket.gethostname().split(".")[0]


def log(name: str) -> Path:
    return LOG_DIR / f"{name}.log"


def gpu_devices(node: str) -> list[Path]:
    first = NODES.index(node) * GPUS_PER_NODE
    return [FAKE_GPU_DIR / f"nvidia{first + i}" for i in range(GPUS_PER_NODE)]
