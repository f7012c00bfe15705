"""How many events the streams of each event loop have written, as plain ints.

A stream adds to its loop's ``Tally`` once per batch it writes, and
``sse.metrics`` adds the growth to its Prometheus counter once a second.  A
``Counter.inc()`` per batch would cost the hot path 1 to 2.5 µs each (a
lock; in multiprocess mode a write to a memory-mapped file too), 3 to 7 %
of the CPU an event costs (bench/RESULTS.md); an addition costs 60 ns.

Each tally is written only on its own loop's thread, and read from any:
no lock on the hot path, no lost update.
"""

from __future__ import annotations

import asyncio
import threading


class Tally:
    """What the streams of one event loop have written."""

    __slots__ = ("delivered",)

    def __init__(self) -> None:
        self.delivered = 0


_lock = threading.Lock()
_tallies: dict[asyncio.AbstractEventLoop, Tally] = {}
# Delivered by the streams of loops that have closed since.
_retired = 0


def of(loop: asyncio.AbstractEventLoop) -> Tally:
    """The tally of ``loop`` (its streams add to it on that loop only)."""
    tally = _tallies.get(loop)
    if tally is None:
        with _lock:
            tally = _tallies.setdefault(loop, Tally())
    return tally


def delivered() -> int:
    """Events written by every stream of this process so far."""
    global _retired
    with _lock:
        for loop in [loop for loop in _tallies if loop.is_closed()]:
            _retired += _tallies.pop(loop).delivered
        return _retired + sum(tally.delivered for tally in _tallies.values())
