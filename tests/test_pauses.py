"""sse._process.gc_freeze: long-lived objects leave the collector's sight, and come back."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from sse._process import gc_freeze as pauses


@pytest.fixture(autouse=True)
def _unfrozen() -> object:
    gc.unfreeze()
    yield
    gc.unfreeze()


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


async def test_frozen_garbage_is_reclaimed_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pauses, "SETTLE", 0.01)
    monkeypatch.setattr(pauses, "UNFREEZE_INTERVAL", 3600.0)
    monkeypatch.setattr(pauses, "_last_unfreeze", time.monotonic())
    loop = asyncio.get_running_loop()
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    gc.collect()
    gc.freeze()  # frozen while its stream was open
    del cycle  # the stream closed
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
    monkeypatch.setattr(pauses, "_opened_since_freeze", 0)
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
    monkeypatch.setattr(pauses, "_last_unfreeze", time.monotonic())
    monkeypatch.setattr(pauses, "_open", 0)
    monkeypatch.setattr(pauses, "_closed_since_unfreeze", 0)
    loop = asyncio.get_running_loop()
    for _ in range(9):
        pauses.stream_opened(loop)
    await asyncio.sleep(0.05)
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    gc.collect()
    gc.freeze()
    del cycle
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
