"""The node-local image cache: one squashfs per image, keyed by the digest its reference resolves to.

Layout under ``site.cache.root``, all root-owned. Users read public images and their metadata (``images/``, 0755,
files 0644: the plugin mounts them, `hpcctl image ls` lists them), nothing else: a private image's squashfs and
metadata are 0600, so only jobs whose user the registry accepted get at them; ``blobs/``, ``tmp/`` and ``locks/``
are 0700 (see hpcctl.image.locks: a user who could open a lock file could hang steps and pulls)::

    images/<hex>.sqsh   the image            images/<hex>.json   its metadata, written last; mtime: last use
    blobs/sha256/<hex>  compressed layers    tmp/                 partial files of running pulls
    locks/<hex>.pull    single-flight lock   locks/<hex>.use      shared while a job uses the image
    locks/gc.lock       pulls hold it shared; gc removes blobs only when it gets it exclusively

An entry is valid only when its metadata exists and names the squashfs's exact size, so a pull killed at any
moment (or a disk that filled up) leaves nothing that looks valid. Finding a valid entry takes no lock. Sizes are
measured on disk, never taken from a manifest.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from hpcctl.image import locks
from hpcctl.image.errors import NoSpace

METADATA_VERSION = 1
GC_LOCK = "gc.lock"
PUBLIC_MODE = 0o644
PRIVATE_MODE = 0o600


@dataclass(frozen=True)
class ImageConfig:
    """The parts of the image config a runtime needs."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # shown by `hpcctl image inspect`

    @classmethod
    def from_dict(cls, raw: dict | None) -> "ImageConfig":
        raw = raw or {}
        def seq(key):
            value = raw.get(key)
            return tuple(value) if isinstance(value, list) else None
        labels = raw.get("Labels") if isinstance(raw.get("Labels"), dict) else {}
        return cls(env=tuple(raw.get("Env") or ()), entrypoint=seq("Entrypoint"), cmd=seq("Cmd"),
                   working_dir=raw.get("WorkingDir") or "", user=raw.get("User") or "",
                   labels={str(k): str(v) for k, v in labels.items()})

    def to_dict(self) -> dict:
        return {"Env": list(self.env), "Entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
                "Cmd": list(self.cmd) if self.cmd is not None else None, "WorkingDir": self.working_dir,
                "User": self.user, "Labels": dict(self.labels)}


@dataclass(frozen=True)
class CachedImage:
    """A squashfs ready to mount. ``lock_path`` is the file to hold a shared flock on while a job uses it
    (None for local files, which the cache never removes); ``open_as``: the ids with whose rights the file is
    opened (the shared store's owner; None: root's)."""

    path: str
    digest: str
    reference: str
    size: int
    config: ImageConfig = field(default_factory=ImageConfig)
    lock_path: str | None = None
    open_as: tuple[int, int] | None = None  # (uid, gid) to open ``path`` as: the shared store's owner
    offset: int = 0  # where the squashfs starts in ``path`` (a .sif's system partition); ``size`` bytes long


@dataclass(frozen=True)
class Entry:
    """A valid cache entry, as `hpcctl image ls` shows it: ``size`` is its squashfs's, ``disk_bytes`` what its files
    take on disk (what gc frees by removing it), both measured."""

    key: str
    meta: dict
    sqsh: Path
    last_used: float
    size: int
    disk_bytes: int

    @property
    def digest(self) -> str:
        return self.meta["digest"]

    @property
    def is_sif(self) -> bool:
        """A .sif pulled with ``oras://`` (hpcctl.image.oras), not a container image."""
        return "sif_offset" in self.meta


def key_of(digest: str) -> str:
    return digest.split(":", 1)[1]


def on_disk(st: os.stat_result) -> int:
    """The bytes a file takes on disk."""
    return st.st_blocks * 512


class ImageCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.images = self.root / "images"
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"

    # --- layout and locks ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the layout (as whoever may write the cache: root for the node cache), each directory with its mode
        (also fixing those an older hpcctl made)."""
        layout = {self.root: 0o755, self.images: 0o755, self.blobs: 0o700, self.tmp: 0o700,
                  self.locks: locks.DIR_MODE}
        for directory, mode in layout.items():
            try:
                directory.mkdir(mode=mode, parents=True, exist_ok=True)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise NoSpace(f"no space left for the image cache at {self.root}",
                                  "run `hpcctl image gc` or free space on that disk") from None
                raise
            os.chmod(directory, mode)

    def writable(self) -> bool:
        if self.root.exists():
            return os.access(self.root, os.W_OK)
        parent = next((p for p in self.root.parents if p.exists()), Path("/"))
        return os.access(parent, os.W_OK)

    def open_lock(self, name: str) -> int:
        """An fd of locks/NAME (created root-only) to flock."""
        return locks.open_lock(self.locks, name)

    @contextlib.contextmanager
    def pull_lock(self, digest: str) -> Iterator[None]:
        """Exclusive per image (single flight) plus the shared gc lock, held for a whole pull; each waited for at
        most its bound (locks.GC_WAIT_S, locks.PULL_WAIT_S), then LockBusy."""
        gc_fd = self.open_lock(GC_LOCK)
        name = f"{key_of(digest)}.pull"
        fd = self.open_lock(name)
        try:
            locks.flock_within(gc_fd, fcntl.LOCK_SH, locks.GC_WAIT_S,
                               f"the gc lock {self.locks / GC_LOCK} of the image cache",
                               "`hpcctl image gc` seems stuck on this node: try again later, or ask the admin to "
                               "end that process")
            locks.flock_within(fd, fcntl.LOCK_EX, locks.PULL_WAIT_S,
                               f"the pull lock {self.locks / name} of image {digest[:19]}",
                               "another pull of this image on this node seems stuck: try again later, or ask the "
                               "admin to end that process")
            yield
        finally:
            os.close(fd)
            os.close(gc_fd)

    def use_lock_path(self, digest: str) -> Path:
        return self.locks / f"{key_of(digest)}.use"

    # --- entries ---------------------------------------------------------------------------------------------
    def sqsh_path(self, digest: str) -> Path:
        return self.images / f"{key_of(digest)}.sqsh"

    def meta_path(self, digest: str) -> Path:
        return self.images / f"{key_of(digest)}.json"

    def lookup(self, digest: str) -> Entry | None:
        """The valid entry for ``digest``, or None. Lock-free: metadata is published last and names the size."""
        return self._entry(key_of(digest))

    def _entry(self, key: str) -> Entry | None:
        meta_path = self.images / f"{key}.json"
        sqsh = self.images / f"{key}.sqsh"
        try:
            meta = json.loads(meta_path.read_text())
            meta_st, st = meta_path.stat(), sqsh.stat()
        except (ValueError, OSError):
            return None
        if meta.get("version") != METADATA_VERSION or meta.get("size") != st.st_size:
            return None
        return Entry(key, meta, sqsh, last_used=meta_st.st_mtime, size=st.st_size,
                     disk_bytes=on_disk(st) + on_disk(meta_st))

    def entries(self) -> list[Entry]:
        if not self.images.is_dir():
            return []
        found = (self._entry(p.stem) for p in sorted(self.images.glob("*.json")))
        return [e for e in found if e]

    def touch(self, digest: str) -> None:
        """Record a use in the metadata's mtime, which users can read (gc removes the least recently used images
        first), and make sure the image's use lock exists for a job to hold; silently skipped when this process
        may not write the cache."""
        with contextlib.suppress(OSError):
            os.utime(self.meta_path(digest))
            os.close(self.open_lock(self.use_lock_path(digest).name))

    def as_image(self, entry: Entry) -> CachedImage:
        """A cached .sif (an ``oras://`` image) is mounted as a .sif file is: its system partition's bytes."""
        return CachedImage(path=str(entry.sqsh), digest=entry.digest, reference=entry.meta["reference"],
                           size=entry.meta.get("sif_size", entry.size),
                           config=ImageConfig.from_dict(entry.meta.get("config")),
                           lock_path=str(self.use_lock_path(entry.digest)), offset=entry.meta.get("sif_offset", 0))

    # --- writing (under pull_lock) ---------------------------------------------------------------------------
    def single_flight(self, digest: str, build: Callable[[], Entry]) -> tuple[Entry, bool]:
        """The entry for ``digest``, made by ``build()`` unless another process made it while this one waited for
        the image's pull lock; (entry, whether this process built it). ``build`` publishes its entry."""
        self.prepare()
        with self.pull_lock(digest):
            entry = self.lookup(digest)
            if entry is not None:
                return entry, False
            self.clean_partials(digest)
            return build(), True

    def partial_path(self, digest: str) -> Path:
        return self.tmp / f"{key_of(digest)}.{os.getpid()}.sqsh"

    def clean_partials(self, digest: str) -> None:
        """Remove what killed pulls of ``digest`` left, and blobs half-downloaded by pulls that died; only call with
        the pull lock of ``digest`` held."""
        leftovers = list(self.tmp.glob(f"{key_of(digest)}.*"))
        leftovers += [p for p in self.tmp.glob("blob-*.part") if not _pid_alive(p.name.split(".")[1])]
        for leftover in leftovers:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def publish(self, digest: str, partial: Path, meta: dict) -> Entry:
        """Move the finished squashfs in place, then write the metadata that makes it valid."""
        meta = {"version": METADATA_VERSION, **meta, "digest": digest, "size": partial.stat().st_size,
                "created": time.time()}
        mode = PRIVATE_MODE if meta.get("auth_required") else PUBLIC_MODE
        try:
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(partial, mode)
            os.replace(partial, self.sqsh_path(digest))
            meta_tmp = self.tmp / f"{key_of(digest)}.{os.getpid()}.json"
            with open(meta_tmp, "w") as fh:
                json.dump(meta, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(meta_tmp, mode)
            os.replace(meta_tmp, self.meta_path(digest))
            dir_fd = os.open(self.images, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"no space left on the image cache's disk ({self.root})",
                              "run `hpcctl image gc` or free space on that disk") from None
            raise
        self.touch(digest)
        entry = self.lookup(digest)
        assert entry is not None
        return entry

    def remove(self, entry: Entry) -> None:
        """Invalidate first (metadata), then free the space; callers hold the image's locks. Lock files stay:
        unlinking a lock file someone waits on would let two processes hold "the" lock at once."""
        with contextlib.suppress(FileNotFoundError):
            (self.images / f"{entry.key}.json").unlink()
        with contextlib.suppress(FileNotFoundError):
            entry.sqsh.unlink()

    def referenced_blobs(self) -> set[str]:
        return {d for e in self.entries() for d in e.meta.get("layers", ())}

    def blob_files(self) -> list[Path]:
        folder = self.blobs / "sha256"
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def disk_usage(self) -> int:
        """What the cached images and layers take on disk, measured there."""
        return sum(e.disk_bytes for e in self.entries()) + sum(on_disk(p.stat()) for p in self.blob_files())


def find(stores: list[ImageCache], digest: str) -> tuple[ImageCache, Entry] | None:
    """The first of ``stores`` that holds a valid entry for ``digest``, with that entry."""
    for store in stores:
        entry = store.lookup(digest)
        if entry:
            return store, entry
    return None


def _pid_alive(pid: str) -> bool:
    """Whether the process that named a partial blob ``blob-<hex>.<pid>.<thread>.part`` still runs on this node."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
