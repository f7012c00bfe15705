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

While stream requests keep arriving, the collector makes no full
collection of its own (``stream_arriving``): in a reconnect storm the loop
advances thousands of opens together, none of them done, so none frozen
yet, and each full collection walked all of them again, ever more of them
(10,000 reconnects: 15 full collections, 4.5 s of the storm's 18).  The
young generations are still collected, and the freezes every
``FREEZE_EVERY`` streams go on, without a young collection first: that took
a tenth of the storm, and the storm's young garbage it would have spared
the freeze is small (370 objects for 10,000 opens).  ``SETTLE`` seconds
after the last arrival the collector's thresholds are back as they were,
and a full collection that came due meanwhile (for the streams the storm's
clients dropped) runs then; after ``MAX_HOLD`` seconds of arrivals it runs
anyway, and freezes collect the young generations first again.
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
# The collector's own full collections wait for this many young ones:
# never, in practice, while stream requests keep arriving.
HELD_THRESHOLD = 1 << 30
# The longest a full collection that came due waits for streams to stop
# arriving: under steady churn they never stop.
MAX_HOLD = 30.0

# Per event loop taking streams: when its latest one arrived (loop time).
# One timer a loop settles it, SETTLE seconds after that.
_arrived: dict[asyncio.AbstractEventLoop, float] = {}
_opened_since_freeze = 0
_last_unfreeze = time.monotonic()
# Streams counted by stream_opened / stream_closed.
_open = 0
_closed_since_unfreeze = 0
# The collector's thresholds to restore once streams stop arriving, and
# since when (monotonic seconds).
_held: tuple[int, int, int] | None = None
_held_since = 0.0


def freeze_start_up() -> None:
    """Start-up objects (modules, settings, URL patterns) live forever."""
    gc.collect()
    gc.freeze()


def stream_arriving(loop: asyncio.AbstractEventLoop) -> None:
    """A stream request reached its view: no full collection of the
    collector's own until streams stop arriving for ``SETTLE`` seconds."""
    global _held, _held_since
    if _held is None:
        _held, _held_since = gc.get_threshold(), time.monotonic()
        gc.set_threshold(_held[0], _held[1], HELD_THRESHOLD)
    _settle_later(loop)


def stream_opened(loop: asyncio.AbstractEventLoop) -> None:
    """Freeze once streams stop arriving for a moment, or every
    ``FREEZE_EVERY`` streams while they keep arriving."""
    global _opened_since_freeze, _open
    _open += 1
    _opened_since_freeze += 1
    if _opened_since_freeze >= FREEZE_EVERY:
        _freeze()
    _settle_later(loop)


def _settle_later(loop: asyncio.AbstractEventLoop) -> None:
    """Settle SETTLE seconds after this arrival: a dict store per stream,
    the timer set again only when it rings early."""
    if loop not in _arrived:
        loop.call_later(SETTLE, _settled, loop)
    _arrived[loop] = loop.time()


def _settled(loop: asyncio.AbstractEventLoop) -> None:
    """Streams stopped arriving: the collector has its thresholds back, and
    what the streams left is frozen (or, when due, everything collected)."""
    global _held
    arrived = _arrived.get(loop)
    if arrived is None:
        return
    wait = arrived + SETTLE - loop.time()
    if wait > 0:  # streams arrived since the timer was set
        loop.call_later(wait, _settled, loop)
        return
    del _arrived[loop]
    if any(not other.is_closed() for other in _arrived):
        return  # streams still arrive on another loop: its timer settles
    if _held is not None:
        gc.set_threshold(*_held)
        _held = None
    _freeze()


def stream_closed() -> None:
    """A stream counted by :func:`stream_opened` ended."""
    global _open, _closed_since_unfreeze
    _open = max(0, _open - 1)
    _closed_since_unfreeze += 1


def _freeze() -> None:
    global _last_unfreeze, _opened_since_freeze, _closed_since_unfreeze
    _opened_since_freeze = 0
    now = time.monotonic()
    churned = _closed_since_unfreeze >= max(UNFREEZE_AFTER_CLOSED, _open)
    due = churned or now - _last_unfreeze >= UNFREEZE_INTERVAL
    storming = _held is not None and now - _held_since < MAX_HOLD
    if due and not storming:
        # The one full pause per interval: the garbage of the streams that
        # closed while frozen goes now, before anything is frozen again.
        # Not while streams arrive, up to MAX_HOLD: once they stopped (the
        # reconnect storm after a restart would pause for all it dropped).
        _last_unfreeze = now
        _closed_since_unfreeze = 0
        gc.unfreeze()
        gc.collect()
    elif not storming:
        gc.collect(1)  # the young garbage goes first: frozen, it would stay
    gc.freeze()
