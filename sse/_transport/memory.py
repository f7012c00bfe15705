"""The embedded broker: buffers and delivery inside this process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .._stream.events import ZERO, Event, EventKey, format_id, now_ms, render
from .._stream.replay import BufferRead
from ..conf import conf
from .base import LAST_ID_TTL, Broker, BufferInfo, Deliver


@dataclass(slots=True)
class _SessionBuffer:
    events: deque[Event] = field(default_factory=deque)
    last: EventKey = ZERO
    trimmed: EventKey | None = None
    expires_at: float = 0.0


class MemoryBroker(Broker):
    """One process, no Redis: publishers in any thread, streams on the
    serving loop.  Same buffer, TTL and replay rules as the Redis broker."""

    backend = "memory"
    # How often expired buffers are swept so memory stays bounded.
    SWEEP_INTERVAL = 60.0

    def __init__(self, deliver: Deliver) -> None:
        super().__init__(deliver)
        self._lock = threading.Lock()
        self._buffers: dict[str, _SessionBuffer] = {}
        # The loops with streams of each session.
        self._subscribed: dict[str, set[asyncio.AbstractEventLoop]] = {}
        self._next_sweep = time.monotonic() + self.SWEEP_INTERVAL

    def publish(self, session_id: str, body: bytes) -> str:
        now = time.monotonic()
        with self._lock:
            buffer = self._live_buffer(session_id, now, create=True)
            assert buffer is not None
            ms = now_ms()
            key = (ms, 0) if ms > buffer.last[0] else (buffer.last[0], buffer.last[1] + 1)
            event = render(format_id(key).encode(), body)
            buffer.last = key
            buffer.events.append(event)
            size = conf.BUFFER_SIZE
            while len(buffer.events) > size:
                buffer.trimmed = buffer.events.popleft().key
            buffer.expires_at = now + conf.BUFFER_TTL
            # Scheduling under the lock keeps delivery in id order: every
            # event goes through the loop's FIFO of callbacks.
            for loop in self._subscribed.get(session_id, ()):
                if not loop.is_closed():
                    loop.call_soon_threadsafe(self._deliver, loop, session_id, [event])
            if now >= self._next_sweep:
                self._sweep(now)
        return event.id

    async def apublish(self, session_id: str, body: bytes) -> str:
        return self.publish(session_id, body)

    async def subscribe(self, session_id: str) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._subscribed.setdefault(session_id, set()).add(loop)

    def unsubscribe(self, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            loops = self._subscribed.get(session_id)
            if loops is not None:
                loops.discard(loop)
                if not loops:
                    del self._subscribed[session_id]

    def _live_buffer(self, session_id: str, now: float, create: bool) -> _SessionBuffer | None:
        buffer = self._buffers.get(session_id)
        if buffer is not None and buffer.events and buffer.expires_at <= now:
            # Expired like a Redis key; ``last`` stays so ids keep increasing.
            buffer.events.clear()
            buffer.trimmed = None
        if buffer is None and create:
            buffer = self._buffers[session_id] = _SessionBuffer()
        return buffer

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_INTERVAL
        expired = [
            sid
            for sid, buffer in self._buffers.items()
            if buffer.expires_at + LAST_ID_TTL <= now and sid not in self._subscribed
        ]
        for sid in expired:
            del self._buffers[sid]

    async def read(self, session_id: str, after: EventKey | None) -> BufferRead:
        with self._lock:
            buffer = self._live_buffer(session_id, time.monotonic(), create=False)
            if buffer is None:
                return BufferRead(exists=False)
            if not buffer.events:
                return BufferRead(exists=False, newest=buffer.last)
            events = [] if after is None else [e for e in buffer.events if e.key > after]
            return BufferRead(True, buffer.last, buffer.trimmed, events)

    def buffer_info(self, session_id: str) -> BufferInfo:
        with self._lock:
            buffer = self._live_buffer(session_id, time.monotonic(), create=False)
            if buffer is None or not buffer.events:
                return BufferInfo(0, None)
            return BufferInfo(len(buffer.events), format_id(buffer.last))

    def is_connected(self) -> bool:
        return True

    @property
    def listener_running(self) -> bool:
        return True
