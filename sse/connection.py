"""One open stream (``Connection``) and the streams of one event loop
(``LocalSessions``), which the brokers fan events out to."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from .events import Event, EventKey

logger = logging.getLogger(__name__)

ZERO: EventKey = (0, 0)


class Connection:
    """The bounded queue between the broker and one HTTP stream.

    The bound keeps memory flat whatever a client does: a client that cannot
    keep up is disconnected (``ended == "overflow"``) instead of making the
    server hold events for it; it reconnects with ``Last-Event-ID`` and
    replays from the session buffer, so nothing is lost silently.
    """

    __slots__ = (
        "__weakref__",
        "_alarm",
        "_items",
        "_rang",
        "_sending",
        "_waiter",
        "_waiting",
        "alarm_at",
        "counted",
        "ended",
        "live",
        "loop",
        "maxsize",
        "on_end",
        "position",
        "send",
        "session_id",
        "task",
    )

    def __init__(
        self,
        session_id: str,
        maxsize: int,
        loop: asyncio.AbstractEventLoop,
        counted: bool = True,
    ) -> None:
        self.session_id = session_id
        # False for server-side listeners (an agent awaiting a decision): they
        # are not browser streams and count against no connection limit.
        self.counted = counted
        self.maxsize = maxsize
        self.loop = loop
        # Highest event key queued or written: older or equal keys are duplicates.
        self.position: EventKey = ZERO
        self.ended: str | None = None
        self._items: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # True from the moment the stream waits for events until it has
        # taken them: it is keeping up, however many arrive meanwhile.
        self._waiting = False
        # True once the stream has read the buffer: from then on, catching
        # up after a broker outage is the listener's job.
        self.live = not counted
        self.task: asyncio.Task[object] | None = None
        # Called once when the connection ends, e.g. to leave the broker at
        # once rather than when the cancelled response is collected.
        self.on_end: Callable[[Connection], None] | None = None
        # One timer per deadline (the next heartbeat), not one per wait: a
        # stream that gets an event every few milliseconds would otherwise
        # arm and cancel a timer for each.
        self.alarm_at: float | None = None
        self._alarm: asyncio.TimerHandle | None = None
        self._rang = False
        # The server's ASGI ``send`` for this stream's response, when the
        # handler hands it over (``sse.asgi`` does): an event for a stream
        # that waits is then sent from the broker's callback, without waking
        # the stream's task.  ``_sending`` is a send that had to wait.
        self.send: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._sending: asyncio.Task[None] | None = None

    def offer(self, event: Event) -> None:
        """Queue ``event``, or send it at once to a stream that waits, unless
        it is a duplicate; runs on ``self.loop``."""
        if self.ended is not None or event.key <= self.position:
            return
        if len(self._items) >= self.maxsize and not self._waiting:
            # A burst to a stream that waits is taken in one go; a full queue
            # while the stream is busy writing means the client does not read.
            logger.warning("SSE client of session %s too slow: disconnected", self.session_id)
            self.end("overflow")
            return
        self.position = event.key
        if self._waiting and not self._items and self.send is not None and self._send_now(event):
            return
        self._items.append(event)
        self._wake()

    def _send_now(self, event: Event) -> bool:
        """Hand ``event`` to the server at once; False if it must be queued
        (an earlier send is still waiting for the client)."""
        if self._sending is not None:
            return False
        assert self.send is not None
        message = {"type": "http.response.body", "body": event.frame, "more_body": True}
        sending = self.send(message).__await__()
        try:
            waiting_on = sending.send(None)
        except StopIteration:
            return True  # the usual case: the server wrote it without waiting
        except Exception as exc:
            self._send_failed(exc)
            return True
        # The server waits (for the client to read): finish this send in a
        # task; the stream writes nothing before it is done.
        self._sending = self.loop.create_task(_finish(sending, waiting_on))
        self._sending.add_done_callback(self._sent)
        return True

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._send_failed(exc)

    def _send_failed(self, exc: BaseException) -> None:
        """The stream ends; its client reconnects and replays what it missed."""
        logger.error(
            "SSE stream of session %s: sending an event failed", self.session_id, exc_info=exc
        )
        self.end("error")

    @property
    def sending(self) -> bool:
        """True while an event sent from the broker's callback waits for the client."""
        return self._sending is not None

    async def flush(self) -> None:
        """Wait until the events sent from the broker's callback are written."""
        if self._sending is not None:
            await asyncio.wait([self._sending])

    def close(self) -> None:
        """The stream is over: no more alarms, nothing more is sent from here."""
        self.cancel_alarm()
        self.send = None
        if self._sending is not None:
            self._sending.cancel()

    def advance(self, key: EventKey) -> None:
        if key > self.position:
            self.position = key

    def end(self, reason: str) -> None:
        """Stop the stream: it writes nothing more and its response ends."""
        if self.ended is not None:
            return
        self.ended = reason
        self._items.clear()
        if reason == "overflow" and self._sending is not None:
            self._sending.cancel()  # stuck: the client does not read
        if self.on_end is not None:
            self.on_end(self)
        if self._waiting:
            self._wake()
        elif self.task is not None:
            if reason == "overflow":
                # Stuck writing to a client that does not read: only
                # cancelling the write frees the stream.
                self.task.cancel()
            else:
                # Busy for a moment, or stuck: give it a moment to end cleanly.
                self.loop.call_later(1.0, self._cancel)

    def _cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def set_alarm(self, when: float) -> None:
        """Wake the stream at loop time ``when``, events or not: ``wait()``
        is done (or, if it rang while nobody waited, returns None once)."""
        if self._alarm is not None:
            self._alarm.cancel()
        self.alarm_at = when
        self._alarm = self.loop.call_at(when, self._ring)

    def cancel_alarm(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
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
        items = list(self._items)
        self._items.clear()
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

    def __len__(self) -> int:
        return len(self._items)


async def _finish(sending: Generator[Any, None, None], waiting_on: Any) -> None:
    """Drive ``sending``, an awaitable suspended on the future ``waiting_on``
    (None: it yielded to the loop), to its end, as a task would."""
    while True:
        cancelled = None
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait([waiting_on])
        except asyncio.CancelledError as exc:
            cancelled = exc
        try:
            waiting_on = sending.send(None) if cancelled is None else sending.throw(cancelled)
        except StopIteration:
            return


class LocalSessions:
    """The connections of one event loop, grouped by session."""

    def __init__(self) -> None:
        self.sessions: dict[str, set[Connection]] = {}

    def add(self, conn: Connection) -> bool:
        """Register ``conn``; True if it is the session's first here."""
        conns = self.sessions.get(conn.session_id)
        if conns is None:
            self.sessions[conn.session_id] = {conn}
            return True
        conns.add(conn)
        return False

    def remove(self, conn: Connection) -> bool:
        """Unregister ``conn``; True if it was the session's last here."""
        conns = self.sessions.get(conn.session_id)
        if conns is None or conn not in conns:
            return False
        conns.discard(conn)
        if conns:
            return False
        del self.sessions[conn.session_id]
        return True

    def deliver(self, session_id: str, events: list[Event]) -> None:
        for conn in tuple(self.sessions.get(session_id, ())):
            for event in events:
                conn.offer(event)

    def end_all(self, reason: str) -> None:
        for conns in tuple(self.sessions.values()):
            for conn in tuple(conns):
                conn.end(reason)
