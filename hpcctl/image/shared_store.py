"""The cluster-wide image store (site `cache.shared`): each image digest is converted once for the whole cluster.

Layout under ``cache.shared.root`` (a directory of the shared file system every node mounts at the same path),
owned by the store's service account, which does every read and write there (hpcctl.image.as_owner; root may be
squashed, and users must not be able to write)::

    images/<hex>.sqsh  the image (0644; 0600 when private)   images/<hex>.json  its metadata, written last (as in
    tmp/               partial files of running publications                     the node cache, hpcctl.image.cache)
    locks/<hex>.lock   the conversion lock (hpcctl.image.store_lock: O_EXCL, heartbeat, race-free take-over)
    uses/<hex>/<node>.<jobid>   a use record: written when a job's step on that node starts using the image
    store-id           the store's random name, which `hpcctl site check` prints on every node

The first node that needs an image takes its lock, converts it into its own node cache (root's layer store, as a
pull), and the owner publishes it: copied to tmp/, fsynced, renamed into images/, then the metadata. Every other
node waits on the lock (a holder whose heartbeat stops is taken over) and then, in ``mount`` mode, hands out the
shared file (the plan opens it with the owner's rights), or in ``copy`` mode copies it into its node cache first.

GC never removes an image with a live use record: it invalidates the metadata first, then reads the records, and
puts the metadata back when one is live; a node writes its record before it looks the image up. A record is live
while Slurm still knows its job, and for USE_TTL_S when Slurm cannot be asked.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import select
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from hpcctl.errors import HpcctlError
from hpcctl.image import as_owner, cache, store_lock
from hpcctl.image.cache import CachedImage, Entry, ImageCache, ImageConfig, key_of
from hpcctl.image.errors import LockBusy, NoSpace, NotFound
from hpcctl.image.progress import Progress
from hpcctl.site.config import SharedStoreConfig

POLL_S = 0.5
WAIT_S = 3600.0  # how long a node waits for another node's conversion whose heartbeat goes on
USE_TTL_S = 8 * 86400  # a use record whose job Slurm cannot be asked about counts this long (longer than MaxTime)
TMP_GRACE_S = 3600.0  # a partial file untouched this long belongs to a dead publication
STORE_ID = "store-id"  # a random name the first `hpcctl site check` gives the store: the same on every node


def _entry_dict(entry: Entry) -> dict:
    return {"key": entry.key, "meta": entry.meta, "sqsh": str(entry.sqsh), "last_used": entry.last_used,
            "size": entry.size, "disk_bytes": entry.disk_bytes}


def _entry(raw: dict) -> Entry:
    return Entry(raw["key"], raw["meta"], Path(raw["sqsh"]), raw["last_used"], raw["size"], raw["disk_bytes"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: int, dst: int, size: int) -> None:
    offset = 0
    while offset < size:
        sent = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
        if sent == 0:
            raise HpcctlError("the image file ended early while copying it", "pull the image again")
        offset += sent


def live_jobs() -> set[str] | None:
    """The ids of the jobs Slurm knows now (pending, running, completing); None when it cannot be asked."""
    try:
        result = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(result.stdout.split()) if result.returncode == 0 else None


class SharedStore:
    def __init__(self, config: SharedStoreConfig, node: str):
        self.config = config
        self.node = node
        self.root = Path(config.root)
        self.images = self.root / "images"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.uses = self.root / "uses"

    @property
    def mode(self) -> str:
        return self.config.mode

    @functools.cached_property
    def owner(self) -> as_owner.Owner:
        return as_owner.Owner.named(self.config.owner)

    def as_owner(self, work: Callable[[], object], what: str):
        return as_owner.run(self.owner, work, what)

    # --- as the owner ------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        if not self.root.is_dir():
            raise NotFound(f"the shared image store {self.root} does not exist on node {self.node}",
                           f"create it on the shared file system, owned by {self.config.owner}, mode 0755 "
                           "(see `hpcctl site check`)")
        for directory, mode in ((self.images, 0o755), (self.tmp, 0o700), (self.locks, 0o700), (self.uses, 0o700)):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=mode)

    def _lookup(self, digest: str) -> dict | None:
        """The entry, if published. The directory is opened first: an NFS client then revalidates it (close-to-open)
        and forgets a cached "no such file" for a name published since."""
        with contextlib.suppress(FileNotFoundError):
            os.close(os.open(self.images, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        entry = ImageCache(self.root).lookup(digest)
        return _entry_dict(entry) if entry else None

    def _record(self, digest: str, job: str) -> None:
        folder = self.uses / key_of(digest)
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        record = folder / f"{self.node}.{job}"
        record.touch(mode=0o600)
        os.utime(record)

    def _use(self, digest: str, job: str | None) -> dict | None:
        """Write this node's use record (first: see the module doc), then look the image up; LRU time too."""
        self._prepare()
        if job:
            self._record(digest, job)
        found = self._lookup(digest)
        if found:
            with contextlib.suppress(OSError):
                os.utime(self.images / f"{found['key']}.json")
        return found

    def _publish(self, digest: str, src: int, meta: dict) -> dict:
        """Copy the squashfs open at ``src`` in, fsync it, rename it into images/, then write its metadata."""
        self._prepare()
        key = key_of(digest)
        size = os.fstat(src).st_size
        meta = {**meta, "version": cache.METADATA_VERSION, "digest": digest, "size": size, "created": time.time(),
                "converted_on": self.node}
        mode = cache.PRIVATE_MODE if meta.get("auth_required") else cache.PUBLIC_MODE
        partial = self.tmp / f"{key}.{self.node}.{os.getpid()}.sqsh"
        meta_tmp = self.tmp / f"{key}.{self.node}.{os.getpid()}.json"
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                _copy(src, fd, size)
                os.fsync(fd)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            os.replace(partial, self.images / f"{key}.sqsh")
            fd = os.open(meta_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(meta, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
                os.fchmod(fh.fileno(), mode)
            os.replace(meta_tmp, self.images / f"{key}.json")
            _fsync_dir(self.images)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"no space left in the shared image store {self.root}",
                              "run `hpcctl image gc` as root, or ask the admin for more space there") from None
            raise
        finally:
            for leftover in (partial, meta_tmp):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        return self._lookup(digest)

    def _copy_out(self, digest: str, dst: int) -> dict:
        """Copy the published squashfs into ``dst`` (root's partial file in the node cache); its entry."""
        found = self._lookup(digest)
        if found is None:
            raise NotFound(f"image {digest[:19]} was removed from the shared store just now", "pull it again")
        fd = os.open(found["sqsh"], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            _copy(fd, dst, found["size"])
        finally:
            os.close(fd)
        os.fsync(dst)
        return found

    def _claim(self, digest: str, send: Callable[[dict], None], orders: int) -> None:
        """Until the image is published (answer {"published": entry}) or this process holds its lock (answer
        {"acquired": true}, then beat the heartbeat until the parent closes ``orders``); {"waiting": holder}
        whenever the holder changes. Ends when the parent goes."""
        self._prepare()
        lock = str(self.locks / f"{key_of(digest)}.lock")
        me = f"{self.node} pid {os.getpid()}"
        watch, guard_watch, reported = store_lock.Watch(), store_lock.Watch(), None
        while True:
            found = self._lookup(digest)
            if found:
                return send({"published": found})
            fd = store_lock.try_create(lock, me)
            if fd is not None:
                found = self._lookup(digest)
                if found:
                    store_lock.release(lock, fd)
                    return send({"published": found})
                break
            seen = store_lock.look(lock)
            if seen and watch.stale(seen):
                stale_holder = store_lock.holder_of(lock)
                if store_lock.take_over(lock, seen, me, guard_watch):
                    send({"took_over": stale_holder})
                    continue
            holder = store_lock.holder_of(lock)
            if holder != reported:
                send({"waiting": holder})
                reported = holder
            if select.select([orders], [], [], POLL_S)[0]:
                return  # the parent went away
        try:
            send({"acquired": True})
            while not select.select([orders], [], [], store_lock.HEARTBEAT_S)[0]:
                store_lock.beat(fd)
        finally:
            store_lock.release(lock, fd)

    # --- root's side -------------------------------------------------------------------------------------------
    def use(self, digest: str, job: str | None = None) -> Entry | None:
        found = self.as_owner(lambda: self._use(digest, job), "looking the image up")
        return _entry(found) if found else None

    def claim(self, digest: str, reference: str, progress: Progress) -> tuple[as_owner.Child, Entry | None]:
        """(the lock holder, None) when this node must convert the image: keep the holder until published, then
        finish() it; (ended holder, entry) when another node published it meanwhile."""
        child = as_owner.start(self.owner, lambda send, orders: self._claim(digest, send, orders))
        deadline = time.monotonic() + WAIT_S
        holder = "another node"
        while True:
            message = child.read(max(deadline - time.monotonic(), 0))
            if message is None:
                child.finish(kill=True)
                raise LockBusy(f"the shared store's conversion lock of {reference} is still held by {holder} after "
                               f"{WAIT_S:g} s", "that node's conversion seems stuck: try again later, or ask the "
                               "admin to end that process")
            if "waiting" in message:
                holder = message["waiting"]
                progress.stage(f"waiting for {holder} to convert {reference} into the shared store")
            elif "acquired" in message:
                return child, None
            elif "published" in message:
                child.finish()
                progress.close()
                return child, _entry(message["published"])
            elif "error" in message:
                child.finish()
                as_owner.raise_reply(message, "waiting for the image's conversion")

    def publish(self, digest: str, squashfs: Path, meta: dict) -> Entry:
        """Publish the finished squashfs at ``squashfs`` (root's, on this node) in the store; its entry there."""
        src = os.open(squashfs, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return _entry(self.as_owner(lambda: self._publish(digest, src, meta), "publishing the image"))
        finally:
            os.close(src)

    def copy_into(self, node_cache: ImageCache, digest: str) -> Entry:
        """The node cache's new entry copied from the shared store (call under the node cache's pull lock)."""
        partial = node_cache.partial_path(digest)
        dst = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                found = _entry(self.as_owner(lambda: self._copy_out(digest, dst), "copying the image"))
            finally:
                os.close(dst)
            return node_cache.publish(digest, partial, {**_meta(found), "shared_store": str(self.root)})
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    def as_image(self, entry: Entry, hold: str) -> CachedImage:
        """A step's image straight from the store, opened with the owner's rights; ``hold``: the node cache's use
        lock of the image, which the step holds (the node's record of its use)."""
        return CachedImage(path=str(entry.sqsh), digest=entry.digest, reference=entry.meta["reference"],
                           size=entry.meta.get("sif_size", entry.size),
                           config=ImageConfig.from_dict(entry.meta.get("config")), lock_path=hold,
                           open_as=(self.owner.uid, self.owner.gid), offset=entry.meta.get("sif_offset", 0))

    def entries(self) -> list[Entry]:
        """Every entry this process may see: all of them as root (read by the owner), public ones for a user."""
        def scan() -> list[dict]:
            return [_entry_dict(e) for e in ImageCache(self.root).entries()] if self.images.is_dir() else []
        return [_entry(raw) for raw in self.as_owner(scan, "listing the shared store")]


class _ToStore(ImageCache):
    """The node cache's layer store and tmp for a conversion whose squashfs goes straight to the shared store (mount
    mode): the node cache never holds a copy, so no step on this node can pick up one that is about to go."""

    def __init__(self, node_cache: ImageCache, store: SharedStore):
        super().__init__(node_cache.root)
        self.store = store

    def publish(self, digest: str, partial: Path, meta: dict) -> Entry:
        return self.store.publish(digest, partial, meta)


def _meta(entry: Entry) -> dict:
    """An entry's metadata less what publication sets again."""
    return {k: v for k, v in entry.meta.items() if k not in ("version", "digest", "size", "created")}


def _convert(store: SharedStore, node_cache: ImageCache, digest: str, build: Callable[[ImageCache], Entry]) -> Entry:
    """Convert the image into the store (call holding its lock): through the node cache in copy mode (which keeps
    its copy), straight from the node's tmp in mount mode; the entry the node then uses."""
    into = node_cache if store.mode == "copy" else _ToStore(node_cache, store)
    made, built = node_cache.single_flight(digest, lambda: build(into))
    if store.mode == "copy" or not built:  # a node cache entry: publish a copy of it
        store.publish(digest, made.sqsh, _meta(made))
    return made


def provide(store: SharedStore, node_cache: ImageCache, digest: str, reference: str,
            build: Callable[[ImageCache], Entry], authorize: Callable[[Entry], None], progress: Progress,
            job: str | None = None) -> CachedImage:
    """The image through the shared store: converted here when no node has it yet (``build(into)`` pulls and converts
    with the node's layer store, publishing through ``into``), else waited for; ``authorize`` checks an entry another
    node made against this user's credentials."""
    for _ in range(3):
        entry = store.use(digest, job if store.mode == "mount" else None)
        converted = False
        if entry is None:
            child, entry = store.claim(digest, reference, progress)
            if entry is None:
                try:
                    made = _convert(store, node_cache, digest, build)
                finally:
                    child.finish()
                if store.mode == "copy":
                    node_cache.touch(digest)
                    return node_cache.as_image(made)
                converted = True
                entry = store.use(digest, job)
        if entry is None:
            continue  # removed by gc between its publication and our use record: once more
        if not converted:
            authorize(entry)
        if store.mode == "mount":
            node_cache.prepare()
            os.close(node_cache.open_lock(node_cache.use_lock_path(digest).name))
            return store.as_image(entry, str(node_cache.use_lock_path(digest)))
        local, _ = node_cache.single_flight(digest, lambda: store.copy_into(node_cache, digest))
        node_cache.touch(digest)
        return node_cache.as_image(local)
    raise HpcctlError(f"image {reference} keeps disappearing from the shared store {store.root}",
                      "a gc runs there in a loop: stop it, then run the job again")


def _probe(store: SharedStore) -> dict:
    """As the owner: can it write the store, and what does this node see there (for `hpcctl site check`)."""
    store._prepare()
    probe = store.tmp / f"check.{store.node}.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
        writes = ""
    except OSError as exc:
        writes = exc.strerror or str(exc)
    ident = store.root / STORE_ID
    if not ident.exists():
        fresh = store.tmp / f"{STORE_ID}.{store.node}.{os.getpid()}"
        fresh.write_text(uuid.uuid4().hex + "\n")
        fresh.chmod(0o644)
        with contextlib.suppress(FileExistsError):
            os.link(fresh, ident)  # the first node to check names the store; the others keep its name
        fresh.unlink()
    keys = sorted(p.stem for p in store.images.glob("*.json"))
    return {"writes": writes, "id": ident.read_text().strip(),
            "images": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12], "count": len(keys)}


def check(store: SharedStore) -> list[tuple[str, bool | None, str]]:
    """`hpcctl site check` of the store on this node: (what, ok (None: not tested), detail) for: it exists, its
    owner is the service account, only that account may write it, the account can write it, and a fingerprint of
    what this node sees (the store's id and its published images) for the admin to compare across nodes."""
    try:
        st = os.stat(store.root)
    except OSError as exc:
        return [("exists", False, f"{exc.strerror}: create it on the shared file system, owned by "
                                  f"{store.config.owner}, mode 0755")]
    out = [("exists", True, "a directory" if os.path.isdir(store.root) else "NOT a directory")]
    try:
        owner = store.owner
    except HpcctlError as exc:
        return [*out, ("owner", False, str(exc))]
    out.append(("owner", st.st_uid == owner.uid, f"uid {st.st_uid}, want {owner.name} (uid {owner.uid})"))
    loose = [str(p) for p in (store.root, store.images, store.tmp, store.locks, store.uses)
             if p.exists() and p.stat().st_mode & 0o022]
    out.append(("writable by the owner only", not loose, f"group/others may write {', '.join(loose)}" if loose
                else f"mode {stat.S_IMODE(st.st_mode):04o}"))
    if os.geteuid() not in (0, owner.uid):
        return [*out, ("the owner can write it", None, "not tested: run `hpcctl site check` as root")]
    try:
        seen = store.as_owner(lambda: _probe(store), "checking the shared store")
    except HpcctlError as exc:
        return [*out, ("the owner can write it", False, str(exc))]
    out.append(("the owner can write it", not seen["writes"], seen["writes"] or f"as {owner.name}"))
    out.append(("fingerprint (compare across nodes)", True,
                f"store {seen['id'][:12]}, {seen['count']} images, listing {seen['images']}"))
    return out
