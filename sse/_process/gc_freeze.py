"""Keep garbage-collection pauses flat however many streams are open.

A full collection walks every tracked object, and each open stream owns a
couple of hundred (its request, tasks, queue, generator frames): with
thousands of streams a full collection stops the server for hundreds of
milliseconds, and every client feels it as latency.  Objects that live as
long as the process (everything imported at start-up) or as long as a
stream are moved out of the collector's sight with ``gc.freeze()``.

Frozen objects are never collected, so every ``UNFREEZE_INTERVAL`` seconds
the collector is given everything back (``gc.unfreeze()``) and runs once in
full: the cyclic garbage of streams that closed meanwhile is reclaimed, and
memory stays bounded at the price of one full pause per interval instead of
one every few seconds.  Under churn it comes sooner: once as many streams
closed as are open (and at least ``UNFREEZE_AFTER_CLOSED``), so the frozen
garbage never outgrows the live streams (a 30-minute soak with 20 closes a
second otherwise held 270 MB of it).
"""

from __future__ import annotations

import asyncio
import gc
import time

# Seconds after the last stream opened: the new streams' objects have settled.
SETTLE = 2.0
# While streams keep arriving (a reconnect storm), freeze after this many:
# the collector would otherwise walk every stream opened since the last
# freeze again and again (each full collection ran over all of them, 215
# times while 5,000 streams opened).
FREEZE_EVERY = 200
UNFREEZE_INTERVAL = 15 * 60.0
UNFREEZE_AFTER_CLOSED = 1000

_scheduled: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
_opened_since_freeze = 0
_last_unfreeze = time.monotonic()
# Streams counted by stream_opened / stream_closed.
_open = 0
_closed_since_unfreeze = 0


def freeze_start_up() -> None:
    """Start-up objects (modules, settings, URL patterns) live forever."""
    gc.collect()
    gc.freeze()


def stream_opened(loop: asyncio.AbstractEventLoop) -> None:
    """Freeze once streams stop arriving for a moment, or every
    ``FREEZE_EVERY`` streams while they keep arriving."""
    global _opened_since_freeze, _open
    handle = _scheduled.pop(loop, None)
    if handle is not None:
        handle.cancel()
    _open += 1
    _opened_since_freeze += 1
    if _opened_since_freeze >= FREEZE_EVERY:
        _freeze(loop)
    else:
        _scheduled[loop] = loop.call_later(SETTLE, _freeze, loop)


def stream_closed() -> None:
    """A stream counted by :func:`stream_opened` ended."""
    global _open, _closed_since_unfreeze
    _open = max(0, _open - 1)
    _closed_since_unfreeze += 1


def _freeze(loop: asyncio.AbstractEventLoop) -> None:
    global _last_unfreeze, _opened_since_freeze, _closed_since_unfreeze
    _scheduled.pop(loop, None)
    _opened_since_freeze = 0
    now = time.monotonic()
    churned = _closed_since_unfreeze >= max(UNFREEZE_AFTER_CLOSED, _open)
    if churned or now - _last_unfreeze >= UNFREEZE_INTERVAL:
        # The one full pause per interval: the garbage of the streams that
        # closed while frozen goes now, before anything is frozen again.
        _last_unfreeze = now
        _closed_since_unfreeze = 0
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)  # the young garbage goes first: frozen, it would stay
    gc.freeze()
