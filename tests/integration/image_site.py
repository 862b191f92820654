"""A site config for image integration tests: the sandbox registries, and a fresh root-owned cache."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def hpcctl_cmd(*args: str) -> list[str]:
    """The command line of this checkout's hpcctl (not taken from conftest: several test dirs have one)."""
    return [sys.executable, "-m", "hpcctl", *args]


class ImageSite:
    def __init__(self, netrc: str = "~/.config/enroot/.credentials"):
        self.dir = Path(tempfile.mkdtemp(prefix="hpcctl-image-test-"))
        self.dir.chmod(0o755)
        self.cache = self.dir / "cache"
        self.file = self.dir / "site.yaml"
        self.file.write_text(
            "version: 1\ncluster: sandbox\n"
            f"cache: {{root: {self.cache}, high_watermark: 5GiB, low_watermark: 4GiB, compression: zstd}}\n"
            "registries: {insecure: [127.0.0.1:5000, 127.0.0.1:5001], docker_config: false, "
            f"netrc: '{netrc}', retries: 2, timeout_s: 20}}\n")
        self.file.chmod(0o644)

    def cmd(self, *args: str) -> list[str]:
        return hpcctl_cmd("--site", str(self.file), "image", *args)

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"hpcctl image {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def pull(self, ref: str, *extra: str) -> dict:
        return json.loads(self.run("pull", "--json", *extra, ref).stdout)

    def ls(self) -> list[dict]:
        return json.loads(self.run("ls", "--json").stdout)


def listing(path: str) -> str:
    return subprocess.run(["unsquashfs", "-lln", path], capture_output=True, text=True, check=True).stdout
