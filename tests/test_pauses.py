"""sse._process.gc_freeze: long-lived objects leave the collector's sight, and come back."""

from __future__ import annotations

import asyncio
import gc

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


async def test_everything_is_handed_back_to_the_collector_periodically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pauses, "SETTLE", 0.01)
    monkeypatch.setattr(pauses, "UNFREEZE_INTERVAL", 0.0)
    gc.freeze()
    assert gc.get_freeze_count() > 0
    pauses.stream_opened(asyncio.get_running_loop())
    await asyncio.sleep(0.05)
    assert gc.get_freeze_count() == 0
