"""The shared store's cross-node lock (hpcctl.image.store_lock): exclusive creation, heartbeat, stale take-over, and
take-over races between waiters, on a real directory."""

from __future__ import annotations

import multiprocessing
import os
import time

from hpcctl.image import store_lock


def test_only_one_creates_the_lock_and_it_names_its_holder(tmp_path):
    lock = str(tmp_path / "img.lock")
    fd = store_lock.try_create(lock, "n1 pid 10")
    assert fd is not None
    assert store_lock.try_create(lock, "n2 pid 20") is None
    assert store_lock.holder_of(lock) == "n1 pid 10"
    store_lock.release(lock, fd)
    assert not os.path.exists(lock)


def test_a_waiter_calls_a_lock_stale_only_after_its_heartbeat_stopped_for_the_bound(tmp_path):
    lock = str(tmp_path / "img.lock")
    fd = store_lock.try_create(lock, "n1")
    watch = store_lock.Watch(stale_s=0.3)
    assert not watch.stale(store_lock.look(lock))
    for _ in range(4):  # the holder beats: never stale
        time.sleep(0.15)
        store_lock.beat(fd)
        assert not watch.stale(store_lock.look(lock))
    time.sleep(0.4)  # the holder died
    assert watch.stale(store_lock.look(lock))


def test_a_stale_lock_is_taken_over_and_then_created_anew(tmp_path):
    lock = str(tmp_path / "img.lock")
    dead = store_lock.try_create(lock, "n1 (crashed)")
    seen = store_lock.look(lock)
    assert store_lock.take_over(lock, seen, "n2", store_lock.Watch())
    assert sorted(os.listdir(tmp_path)) == []
    mine = store_lock.try_create(lock, "n2")
    assert mine is not None and store_lock.holder_of(lock) == "n2"
    store_lock.release(lock, dead)  # the dead holder's late release leaves the new holder's lock alone
    assert store_lock.is_ours(lock, mine)


def test_taking_over_a_lock_renewed_meanwhile_puts_the_new_holders_lock_back(tmp_path):
    lock = str(tmp_path / "img.lock")
    old = store_lock.try_create(lock, "n1")
    seen = store_lock.look(lock)
    store_lock.release(lock, old)  # another waiter took over and a new holder made the lock again
    new = store_lock.try_create(lock, "n3")
    assert not store_lock.take_over(lock, seen, "n2", store_lock.Watch())
    assert store_lock.is_ours(lock, new)
    assert sorted(os.listdir(tmp_path)) == ["img.lock"]


def test_a_guard_left_by_a_waiter_that_died_mid_take_over_goes_once_stale(tmp_path):
    lock = str(tmp_path / "img.lock")
    store_lock.try_create(lock, "crashed holder")
    store_lock.try_create(lock + ".takeover", "crashed waiter")
    seen, guard_watch = store_lock.look(lock), store_lock.Watch(stale_s=0.2)
    assert not store_lock.take_over(lock, seen, "n2", guard_watch)
    time.sleep(0.3)
    assert not store_lock.take_over(lock, seen, "n2", guard_watch)  # removes the dead guard
    assert store_lock.take_over(lock, seen, "n2", guard_watch)
    assert os.listdir(tmp_path) == []


def _racer(lock: str, seen: store_lock.Seen, name: str, start: float, results) -> None:
    while time.time() < start:
        pass
    took = store_lock.take_over(lock, seen, name, store_lock.Watch())
    fd = store_lock.try_create(lock, name)
    results.put((name, took, fd is not None))


def test_of_many_waiters_racing_on_a_stale_lock_exactly_one_takes_it_over_and_one_holds_it(tmp_path):
    for round_ in range(5):
        lock = str(tmp_path / f"img{round_}.lock")
        store_lock.try_create(lock, "crashed")
        seen = store_lock.look(lock)
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        start = time.time() + 0.3
        racers = [ctx.Process(target=_racer, args=(lock, seen, f"w{i}", start, results)) for i in range(8)]
        for racer in racers:
            racer.start()
        outcomes = [results.get(timeout=30) for _ in racers]
        for racer in racers:
            racer.join()
        assert sum(took for _, took, _ in outcomes) == 1
        holders = [name for name, _, holds in outcomes if holds]
        assert len(holders) == 1
        assert store_lock.holder_of(lock) == holders[0]
        assert [p for p in os.listdir(tmp_path) if p.endswith(".takeover")] == []
