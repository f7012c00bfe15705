"""The bounded queue between the broker and one open stream."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .events import ZERO, Event, EventKey
from .loops import of_loop

logger = logging.getLogger(__name__)


class _Alarms:
    """The alarms of one event loop's connections (their heartbeats and
    token expiries): one heap and one loop timer for the earliest, where a
    timer per stream took 0.5 KB of each.  An entry is ``[when, order,
    connection]``; a cancelled one keeps its place without its connection
    until its time comes.

    The timer rings on a grid of ``GRAIN`` seconds, late by less than that,
    for every alarm due by then: the heartbeats of thousands of streams are
    due at scattered times, and a timer for each of them cost the loop more
    than the heartbeats."""

    __slots__ = ("heap", "loop", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[list[Any]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")

    def add(self, when: float, conn: Connection) -> list[Any]:
        entry = [when, next(_order), conn]
        heapq.heappush(self.heap, entry)
        if when < self.timer_at:
            self._arm(when)
        return entry

    def _arm(self, when: float) -> None:
        at = math.ceil(when / GRAIN) * GRAIN
        if at == self.timer_at:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._ring)

    def _ring(self) -> None:
        self.timer, self.timer_at = None, float("inf")
        heap, now = self.heap, self.loop.time()
        while heap and heap[0][0] <= now:
            conn = heapq.heappop(heap)[2]
            if conn is not None:
                conn._ring()
        if heap:
            self._arm(heap[0][0])


# Seconds: how late an alarm (a heartbeat, a token's expiry) may ring.
GRAIN = 0.05
_order = itertools.count()
_lock = threading.Lock()
_loops: dict[asyncio.AbstractEventLoop, _Alarms] = {}


def _alarms(loop: asyncio.AbstractEventLoop) -> _Alarms:
    return of_loop(_loops, _lock, loop, lambda: _Alarms(loop))


class Connection:
    """What the broker has delivered to one stream and the stream has not
    written yet.  The stream's own task takes the events and writes them;
    nothing else writes to the client.

    The bound keeps memory flat whatever a client does: a client that cannot
    keep up is disconnected (``ended == "overflow"``) instead of making the
    server hold events for it; it reconnects with ``Last-Event-ID`` and
    replays from the session buffer, so nothing is lost silently.
    """

    __slots__ = (
        "__weakref__",
        "_alarm",
        "_items",
        "_on_end",
        "_rang",
        "_task",
        "_waiter",
        "_waiting",
        "alarm_at",
        "counted",
        "django_session",
        "ended",
        "lease",
        "live",
        "loop",
        "maxsize",
        "position",
        "session_id",
        "user_pk",
    )

    def __init__(
        self,
        session_id: str,
        maxsize: int,
        loop: asyncio.AbstractEventLoop,
        counted: bool = True,
    ) -> None:
        self.session_id = session_id
        # Whose stream this is (None for server-side listeners): the hub
        # ends it when that user may no longer read the session.
        self.user_pk: Any = None
        # The key of the Django session a cookie-opened stream follows.
        self.django_session: str | None = None
        # False for server-side listeners (an agent awaiting a decision): they
        # are not browser streams and count against no connection limit.
        self.counted = counted
        # Its place among the session's streams in every process (``leases``).
        self.lease: str | None = None
        self.maxsize = maxsize
        self.loop = loop
        # Highest event key queued or written: older or equal keys are duplicates.
        self.position: EventKey = ZERO
        self.ended: str | None = None
        # A list, not a deque: an empty deque takes 600 bytes, per open stream.
        self._items: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None
        # True from the moment the stream waits for events until it has
        # taken them: it is keeping up, however many arrive meanwhile.
        self._waiting = False
        # True once the stream has read the buffer: from then on, catching
        # up after a broker outage is the fan-out's job (``StreamHub``).
        self.live = not counted
        self._task: weakref.ref[asyncio.Task[object]] | None = None
        self._on_end: Callable[[Connection], None] | None = None
        # One timer per deadline (the next heartbeat), not one per wait: a
        # stream that gets an event every few milliseconds would otherwise
        # arm and cancel a timer for each.
        self.alarm_at: float | None = None
        self._alarm: list[Any] | None = None  # its entry in the loop's _Alarms
        self._rang = False

    def on_end(self, callback: Callable[[Connection], None]) -> None:
        """Call ``callback`` once when the connection ends, e.g. to leave the
        fan-out at once rather than when the cancelled response is collected."""
        self._on_end = callback

    def owned_by(self, task: asyncio.Task[object] | None) -> None:
        """The stream's task: cancelled if it cannot end by itself.  Held
        weakly: the task holds the response, which holds the stream, whose
        finalizer holds this connection; a strong reference would keep
        every closed stream alive."""
        self._task = None if task is None else weakref.ref(task)

    def go_live(self, position: EventKey) -> None:
        """The stream has read the buffer up to ``position``."""
        self.advance(position)
        self.live = True

    def offer(self, event: Event) -> None:
        """Queue ``event`` unless it is a duplicate; runs on ``self.loop``."""
        if self.ended is not None or event.key <= self.position:
            return
        if len(self._items) >= self.maxsize and not self._waiting:
            # A burst to a stream that waits is taken in one go; a full queue
            # while the stream is busy writing means the client does not read.
            logger.warning("SSE client of session %s too slow: disconnected", self.session_id)
            self.end("overflow")
            return
        self.position = event.key
        self._items.append(event)
        self._wake()

    def advance(self, key: EventKey) -> None:
        if key > self.position:
            self.position = key

    def end(self, reason: str) -> None:
        """Stop the stream: it writes nothing more and its response ends."""
        if self.ended is not None:
            return
        self.ended = reason
        self._items.clear()
        if self._on_end is not None:
            self._on_end(self)
        if self._waiting:
            self._wake()
        elif (task := self._owner()) is not None:
            if reason == "overflow":
                # Stuck writing to a client that does not read: only
                # cancelling the write frees the stream.
                task.cancel()
            else:
                # Busy for a moment, or stuck: give it a moment to end cleanly.
                self.loop.call_later(1.0, self._cancel)

    def _cancel(self) -> None:
        task = self._owner()
        if task is not None and not task.done():
            task.cancel()

    def _owner(self) -> asyncio.Task[object] | None:
        return None if self._task is None else self._task()

    def set_alarm(self, when: float) -> None:
        """Wake the stream at loop time ``when``, events or not: ``wait()``
        is done (or, if it rang while nobody waited, returns None once)."""
        self.cancel_alarm()
        self.alarm_at = when
        self._alarm = _alarms(self.loop).add(when, self)

    def cancel_alarm(self) -> None:
        if self._alarm is not None:
            self._alarm[2] = None
            self._alarm = None
        self.alarm_at = None

    def _ring(self) -> None:
        self._alarm = None
        self.alarm_at = None
        self._rang = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wait(self) -> asyncio.Future[None] | None:
        """A future that is done when there are events, when the alarm rings
        or when the connection ends; None if one of them happened already.
        Then ``take()``.  The stream's hot path: no coroutine per wait."""
        if self._items or self.ended is not None or self._rang:
            return None
        waiter = self.loop.create_future()
        self._waiter = waiter
        self._waiting = True
        return waiter

    def take(self) -> list[Event] | None:
        """Every queued event; None if there is none or the connection has ended."""
        self._waiting = False
        self._waiter = None
        self._rang = False
        if not self._items or self.ended is not None:
            return None
        items, self._items = self._items, []
        return items

    async def get(self, timeout: float | None = None) -> list[Event] | None:
        """``take()``, waiting up to ``timeout`` seconds (without a timeout:
        until the alarm) for the first event."""
        waiter = self.wait()
        if waiter is not None:
            handle = None if timeout is None else self.loop.call_later(timeout, self._wake)
            try:
                await waiter
            finally:
                if handle is not None:
                    handle.cancel()
                if self._waiter is waiter:
                    self._waiter = None
                    self._waiting = False
        return self.take()

    def close(self) -> None:
        """The stream is over: no more alarms."""
        self.cancel_alarm()

    def __len__(self) -> int:
        return len(self._items)
