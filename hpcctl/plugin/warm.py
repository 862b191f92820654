"""What makes a step's reply reusable by the next step of the same shape: the shim's warm path (spank/plan_cache.c).

The shim keys a reply by what it knows before the core runs (options, pin, uid, gid, groups, working directory,
host, the socket prefix naming the node, the site file and plugstack arguments); the core adds here what else the
reply was built from, so the shim can check it again without Python: the job variables it read (names and
values), the GPU devices it tested (and what access(2) said), and the files it depends on (stat of each: the
site's and Slurm's config, the user database, the root-made files it mounts, hpcctl's own code). A reply that holds
anything of this one step (its ids, its batch script), a user's own paths, a named container, a private image or
an image file is never reused, and none is older than TTL_S. Any job of the user may reuse it: nothing in it is the
job's (the per-job container record is made by the shim for each step).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import hpcctl

if TYPE_CHECKING:
    from hpcctl.container.build import Image
    from hpcctl.container.options import ContainerOptions
    from hpcctl.site.config import SiteConfig

# the code a reply is built from: a changed module makes every reply stale
_CODE_DIRS = ("container", "container/inject", "plugin", "site", "image", "schema", "host")
TTL_S = 600  # a reply is rebuilt at least this often, whatever else changed


class RecordingEnv(Mapping[str, str]):
    """The job's environment, remembering each name the core looked at."""

    def __init__(self, env: Mapping[str, str]):
        self._env = env
        self.read: dict[str, str | None] = {}

    def __getitem__(self, name: str) -> str:
        self.read[name] = self._env.get(name)
        return self._env[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read[name] = self._env.get(name)
        return name in self._env

    def get(self, name, default=None):
        self.read[name] = self._env.get(name)
        return self._env.get(name, default)

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the job's environment is read by name only, so a reused reply can be checked")

    def __len__(self) -> int:
        return len(self._env)


def _stat(path: str) -> list:
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]]


def _code_files() -> list[str]:
    root = os.path.dirname(hpcctl.__file__)
    files = []
    for sub in _CODE_DIRS:
        folder = os.path.join(root, sub)
        files += sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith((".py", ".json")))
    return files


def sweep(directory: str) -> int:
    """Remove the kept replies older than TTL_S (the job epilog's chore); how many were removed."""
    removed = 0
    cutoff = time.time() - TTL_S
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def record(site: SiteConfig, opts: ContainerOptions, image: Image, reply: dict, env: RecordingEnv, *,
           pinned_public: bool, batch: bool, job_step: str, gpu_checks: list[tuple[str, bool]],
           records: str, plans: str, node: str, image_json: str) -> dict | None:
    """The reply's warm record, or None when it must not be reused."""
    if batch or opts.name or opts.save or opts.mounts or image.user_file or not pinned_public:
        return None
    if job_step in json.dumps(reply["plan"]):
        return None  # per-step paths (PMIx directories) or notes naming them
    state = os.path.commonpath([records, plans])
    deps = [site.path, os.path.join(site.slurm.config_dir, "slurm.conf"), "/etc/passwd", "/etc/group",
            *([site.gpu.gres_conf] if site.gpu.gres_conf else []), *_code_files(),
            *(m["source"] for m in reply["plan"]["mounts"] if m.get("source", "").startswith(state + "/"))]
    return {"env": env.read, "access": [[path, ok] for path, ok in gpu_checks], "deps": [_stat(p) for p in deps],
            "ttl_s": TTL_S, "records": records, "plans": plans, "node": node, "image_json": image_json}
