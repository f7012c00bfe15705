"""sse._process.gc_freeze: long-lived objects leave the collector's sight, and come back."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from sse._process import gc_freeze as pauses


@pytest.fixture(autouse=True)
def _unfrozen(monkeypatch: pytest.MonkeyPatch) -> object:
    # As they were before a stream of an earlier test (its loop closed since).
    thresholds = pauses._held or gc.get_threshold()
    gc.set_threshold(*thresholds)
    monkeypatch.setattr(pauses, "_arrived", {})
    monkeypatch.setattr(pauses, "_held", None)
    # Counted afresh: no earlier test's streams, a full collection just made.
    monkeypatch.setattr(pauses, "_last_unfreeze", time.monotonic())
    monkeypatch.setattr(pauses, "_open", 0)
    monkeypatch.setattr(pauses, "_closed_since_unfreeze", 0)
    monkeypatch.setattr(pauses, "_opened_since_freeze", 0)
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def test_objects_are_frozen_once_streams_stop_arriving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pauses, "SETTLE", 0.1)
    loop = asyncio.get_running_loop()
    long_lived = [[n] for n in range(1000)]
    for _ in range(3):  # a burst of streams: one freeze after the last
        pauses.stream_opened(loop)
        await asyncio.sleep(0.05)
    assert gc.get_freeze_count() == 0
    await asyncio.sleep(0.2)
    assert gc.get_freeze_count() >= len(long_lived)


class _Cycle:
    """Garbage only a full collection reclaims: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


def _frozen_garbage() -> weakref.ref[_Cycle]:
    """Garbage frozen while its stream was open (the stream closed since)."""
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    gc.collect()
    gc.freeze()
    return gone


async def test_frozen_garbage_is_reclaimed_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pauses, "SETTLE", 0.01)
    monkeypatch.setattr(pauses, "UNFREEZE_INTERVAL", 3600.0)
    loop = asyncio.get_running_loop()
    gone = _frozen_garbage()
    pauses.stream_opened(loop)
    await asyncio.sleep(0.05)
    assert gone() is not None, "frozen: no collection sees it"
    monkeypatch.setattr(pauses, "UNFREEZE_INTERVAL", 0.0)  # the interval is over
    pauses.stream_opened(loop)
    await asyncio.sleep(0.05)
    assert gone() is None
    assert gc.get_freeze_count() > 0, "what lives on is frozen again"


async def test_a_storm_of_opens_freezes_every_few_hundred(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pauses, "FREEZE_EVERY", 5)
    loop = asyncio.get_running_loop()
    for _ in range(4):
        pauses.stream_opened(loop)
    assert gc.get_freeze_count() == 0, "not yet"
    long_lived = [[n] for n in range(1000)]
    pauses.stream_opened(loop)  # the fifth, with no pause in between
    assert gc.get_freeze_count() >= len(long_lived)


async def test_frozen_garbage_is_reclaimed_once_as_many_streams_closed_as_are_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pauses, "SETTLE", 0.01)
    monkeypatch.setattr(pauses, "UNFREEZE_INTERVAL", 3600.0)
    monkeypatch.setattr(pauses, "UNFREEZE_AFTER_CLOSED", 3)
    loop = asyncio.get_running_loop()
    for _ in range(9):
        pauses.stream_opened(loop)
    await asyncio.sleep(0.05)
    gone = _frozen_garbage()
    for _ in range(3):  # 3 closed, 7 open: it stays frozen
        pauses.stream_closed()
    pauses.stream_opened(loop)
    await asyncio.sleep(0.05)
    assert gone() is not None
    for _ in range(5):  # 8 closed, 3 open
        pauses.stream_closed()
    pauses.stream_opened(loop)
    await asyncio.sleep(0.05)
    assert gone() is None


async def test_no_full_collection_of_its_own_while_streams_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pauses, "SETTLE", 0.05)
    loop = asyncio.get_running_loop()
    thresholds = gc.get_threshold()
    full: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    def allocate() -> list[list[int]]:
        # Long-lived containers, more than what makes the collector run a
        # full collection by its own rules (a quarter of the old objects).
        return [[n] for n in range(len(gc.get_objects(2)) // 2 + 50_000)]

    gc.collect()
    gc.callbacks.append(count)
    try:
        kept = allocate()
        assert full, "without requests arriving, the collector collects in full"
        full.clear()
        pauses.stream_arriving(loop)  # a reconnect storm
        kept += allocate()
        assert not full
        pauses.stream_arriving(loop)
        await asyncio.sleep(0.03)
        assert gc.get_threshold() != thresholds, "requests are still arriving"
        await asyncio.sleep(0.1)
        assert gc.get_threshold() == thresholds, "streams stopped arriving"
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*thresholds)
    del kept


async def test_a_collection_due_while_streams_arrive_waits_until_they_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pauses, "SETTLE", 0.05)
    monkeypatch.setattr(pauses, "FREEZE_EVERY", 1)
    monkeypatch.setattr(pauses, "UNFREEZE_INTERVAL", 0.0)  # always due
    loop = asyncio.get_running_loop()
    gone = _frozen_garbage()
    pauses.stream_arriving(loop)
    pauses.stream_opened(loop)
    assert gone() is not None, "held while streams arrive"
    monkeypatch.setattr(pauses, "_held_since", time.monotonic() - pauses.MAX_HOLD)
    pauses.stream_opened(loop)
    assert gone() is None, "held no longer than MAX_HOLD"
    gone = _frozen_garbage()
    pauses.stream_arriving(loop)
    monkeypatch.setattr(pauses, "_held_since", time.monotonic())
    pauses.stream_opened(loop)
    assert gone() is not None
    await asyncio.sleep(0.1)
    assert gone() is None, "collected once streams stopped arriving"


async def test_a_storm_freezes_young_objects_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pauses, "SETTLE", 0.05)
    monkeypatch.setattr(pauses, "FREEZE_EVERY", 1)
    monkeypatch.setattr(pauses, "UNFREEZE_INTERVAL", 3600.0)
    loop = asyncio.get_running_loop()
    gc.collect()
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    del cycle  # garbage, in the young generation
    pauses.stream_opened(loop)  # no storm: the young generations are collected first
    assert gone() is None
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    del cycle
    pauses.stream_arriving(loop)  # a storm: frozen as it is
    pauses.stream_opened(loop)
    assert gone() is not None
    monkeypatch.setattr(pauses, "UNFREEZE_AFTER_CLOSED", 1)
    pauses.stream_closed()
    pauses.stream_closed()  # both closed: a full collection is due, once streams stop arriving
    await asyncio.sleep(0.1)
    assert gone() is None
