"""The cache's locks and files: nothing a user can open to lock or write, and every wait for a lock ends, with one
line that names the lock, its holder and what to do."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from fake_registry import push
from image_layers import e

from hpcctl.image import api, locks
from hpcctl.image.cache import ImageCache
from hpcctl.image.errors import LockBusy


def mode(path) -> int:
    return os.lstat(path).st_mode & 0o7777


def small(reg) -> str:
    return f"{reg.host}/test/small:v1"


@contextlib.contextmanager
def held(path: Path, operation: int = fcntl.LOCK_EX, release_after: float = 5.0) -> Iterator[None]:
    """``path`` locked by another open file (as another process would hold it), released after ``release_after``
    seconds at the latest, so that code that waits without a bound fails its test instead of hanging it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, operation)
    timer = threading.Timer(release_after, fcntl.flock, (fd, fcntl.LOCK_UN))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        os.close(fd)


def test_lock_files_are_0600_in_a_0700_directory(fake_registry, site):
    api.ensure(small(fake_registry), site)
    cache = ImageCache(site.cache.root)
    assert mode(cache.locks) == 0o700
    assert {p.name.split(".")[-1]: mode(p) for p in cache.locks.iterdir()} == {"lock": 0o600, "pull": 0o600,
                                                                              "use": 0o600}


def test_users_read_public_images_and_their_metadata_and_nothing_else(fake_registry, site, tmp_path):
    public = api.ensure(small(fake_registry), site)
    push(fake_registry, "test/private", "v1", [[e("secret", data=b"private data")]])
    fake_registry.auth = "basic"
    (tmp_path / "netrc").write_text(f"machine {fake_registry.host} login alice password secret\n")
    private = api.ensure(f"{fake_registry.host}/test/private:v1", site)
    cache = ImageCache(site.cache.root)
    assert {name: mode(cache.root / name) for name in ("", "images", "blobs", "tmp", "locks")} == {
        "": 0o755, "images": 0o755, "blobs": 0o700, "tmp": 0o700, "locks": 0o700}
    assert (mode(public.path), mode(cache.meta_path(public.digest))) == (0o644, 0o644)
    assert (mode(private.path), mode(cache.meta_path(private.digest))) == (0o600, 0o600)


def test_an_older_cache_with_world_readable_locks_is_fixed_by_the_next_use(fake_registry, site):
    image = api.ensure(small(fake_registry), site)
    cache = ImageCache(site.cache.root)
    cache.locks.chmod(0o755)
    for path in cache.locks.iterdir():
        path.chmod(0o644)
    api.ensure(small(fake_registry), site)
    assert (mode(cache.locks), mode(image.lock_path)) == (0o700, 0o600)


def test_a_lock_file_replaced_by_a_symlink_is_not_followed(fake_registry, site, tmp_path):
    image = api.ensure(small(fake_registry), site)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    victim.chmod(0o644)
    os.unlink(image.lock_path)
    os.symlink(victim, image.lock_path)
    with pytest.raises(OSError):
        locks.open_lock(Path(image.lock_path).parent, Path(image.lock_path).name)
    assert (victim.read_text(), mode(victim)) == ("keep", 0o644)


def test_a_pull_lock_held_past_its_bound_ends_the_pull_with_one_line(fake_registry, site, monkeypatch):
    monkeypatch.setattr(locks, "PULL_WAIT_S", 0.3)
    cache = ImageCache(site.cache.root)
    cache.prepare()
    lock = cache.locks / f"{fake_registry.small_digest[7:]}.pull"
    started = time.monotonic()
    with held(lock), pytest.raises(LockBusy) as info:
        api.ensure(small(fake_registry), site)
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert "\n" not in message and str(lock) in message and f"pid {os.getpid()}" in message
    assert "after 0.3 s" in message and fake_registry.small_digest[:19] in message
    assert api.ensure(small(fake_registry), site).digest == fake_registry.small_digest


def test_a_stuck_gc_ends_a_cold_pull_with_one_line(fake_registry, site, monkeypatch):
    monkeypatch.setattr(locks, "GC_WAIT_S", 0.3)
    cache = ImageCache(site.cache.root)
    cache.prepare()
    started = time.monotonic()
    with held(cache.locks / "gc.lock"), pytest.raises(LockBusy) as info:
        api.ensure(small(fake_registry), site)
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert "\n" not in message and str(cache.locks / "gc.lock") in message and "hpcctl image gc" in message
    assert cache.entries() == []


def test_marking_an_image_in_use_waits_for_gc_only_up_to_its_bound(fake_registry, site, monkeypatch):
    monkeypatch.setattr(locks, "USE_WAIT_S", 0.3)
    image = api.ensure(small(fake_registry), site)
    started = time.monotonic()
    with held(Path(image.lock_path)), pytest.raises(LockBusy) as info:
        api.mark_in_use(image)
    assert time.monotonic() - started < 3
    assert "\n" not in str(info.value) and image.lock_path in str(info.value)


def test_waiting_pulls_get_the_lock_as_soon_as_it_is_free(fake_registry, site):
    cache = ImageCache(site.cache.root)
    cache.prepare()
    started = time.monotonic()
    with held(cache.locks / "gc.lock", release_after=0.5):
        image = api.ensure(small(fake_registry), site)
    assert 0.5 <= time.monotonic() - started < 3 and os.path.exists(image.path)


def test_a_readers_shared_lock_does_not_hold_up_another_reader(fake_registry, site):
    image = api.ensure(small(fake_registry), site)
    with held(Path(image.lock_path), fcntl.LOCK_SH):
        handle = api.mark_in_use(image)
        api.release(handle)
