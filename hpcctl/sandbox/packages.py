"""The Debian packages the sandbox needs, installed with apt-get only when some are missing."""

from __future__ import annotations

import os
import subprocess

from hpcctl.errors import HpcctlError

PACKAGES = (
    # Slurm, munge, PMIx MPI, and the headers the SPANK plugin builds against
    "slurmctld", "slurmd", "slurm-client", "munge", "libslurm-dev", "libpmix-dev", "openmpi-bin", "libopenmpi-dev",
    "gcc", "make", "libc6-dev", "libjansson-dev",
    # registry and image tooling
    "docker-registry", "nginx-light", "apache2-utils", "debootstrap", "busybox-static",
    "squashfs-tools", "squashfs-tools-ng", "squashfuse", "fuse-overlayfs", "zstd", "pigz",
    # a real Docker daemon for the dockerd:// image source test (started by the test itself, on its own socket)
    "docker.io",
    # peers the benchmarks compare against, and checks the tests run
    "skopeo", "umoci", "charliecloud", "shellcheck",
    # small tools the scripts use
    "procps", "psmisc", "util-linux", "curl", "ca-certificates", "openssl", "fuse3",
)


def missing(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *packages],
                         capture_output=True, text=True, check=False).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.split()[1:2] == ["ii"]}
    return [p for p in packages if p not in installed]


def ensure(log_path: str) -> list[str]:
    """Install what is missing; returns what was installed. Output goes to ``log_path``."""
    todo = missing()
    if not todo:
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(log_path, "a") as log:
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo]):
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode:
                raise HpcctlError(f"'{' '.join(cmd[:3])} ...' failed", f"see {log_path}")
    return todo
