"""What every broker does, and the local bookkeeping they share."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..conf import conf
from ..connection import Connection, LocalSessions
from ..events import Event, EventKey
from ..exceptions import TooManyConnections

# How long a session's newest id is remembered after its buffer expired, so
# that a client which had seen it reconnects without a false ``replay_gap``.
LAST_ID_TTL = 24 * 60 * 60


@dataclass(slots=True)
class BufferRead:
    """A session buffer read after a client's position.

    ``exists`` is False when the buffer expired (or never had an event);
    ``newest`` is the newest key ever stored; ``trimmed`` the newest key
    dropped from the buffer to respect ``BUFFER_SIZE``.
    """

    exists: bool
    # Still known after the buffer expired, when the broker remembers it.
    newest: EventKey | None = None
    trimmed: EventKey | None = None
    events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class BufferInfo:
    length: int
    last_event_id: str | None


class Broker(ABC):
    backend: str

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._locals: dict[asyncio.AbstractEventLoop, LocalSessions] = {}
        self._counts: dict[str, int] = {}
        self._total = 0

    # -- publishing (any thread, sync or async) --------------------------------

    @abstractmethod
    def publish(self, session_id: str, body: bytes) -> str:
        """Store and deliver one prepared event; return its id."""

    @abstractmethod
    async def apublish(self, session_id: str, body: bytes) -> str: ...

    # -- streams (on the serving event loop) -----------------------------------

    async def attach(self, conn: Connection) -> None:
        """Register a stream; once this returns, every event published is
        delivered to it.  Raises TooManyConnections or BrokerUnavailable."""
        if conn.counted:
            with self._lock:  # loops of other threads count here too
                if self._total >= conf.MAX_CONNECTIONS:
                    raise TooManyConnections("process")
                if self._counts.get(conn.session_id, 0) >= conf.MAX_CONNECTIONS_PER_SESSION:
                    raise TooManyConnections("session")
                self._counts[conn.session_id] = self._counts.get(conn.session_id, 0) + 1
                self._total += 1
        first = self._local(conn.loop).add(conn)
        try:
            await self._subscribed(conn, first)
        except BaseException:
            self.detach(conn)
            raise

    def detach(self, conn: Connection) -> None:
        local = self._locals.get(conn.loop)
        if local is None or conn not in local.sessions.get(conn.session_id, ()):
            return
        last = local.remove(conn)
        if conn.counted:
            with self._lock:
                remaining = self._counts.get(conn.session_id, 1) - 1
                if remaining:
                    self._counts[conn.session_id] = remaining
                else:
                    self._counts.pop(conn.session_id, None)
                self._total -= 1
        if last:
            self._unsubscribe(conn)

    def _local(self, loop: asyncio.AbstractEventLoop) -> LocalSessions:
        local = self._locals.get(loop)
        if local is None:
            with self._lock:
                # Loops come and go (asyncio.run in agent code): forget closed ones.
                for closed in [other for other in self._locals if other.is_closed()]:
                    del self._locals[closed]
                local = self._locals.setdefault(loop, LocalSessions())
        return local

    async def _subscribed(self, conn: Connection, first: bool) -> None:  # noqa: B027
        """Make sure events of ``conn.session_id`` reach this process (the
        memory broker has nothing to do)."""

    def _unsubscribe(self, conn: Connection) -> None:  # noqa: B027
        """The last local stream of ``conn.session_id`` has gone."""

    @abstractmethod
    async def read(self, session_id: str, after: EventKey | None) -> BufferRead:
        """The buffer after ``after`` (only its newest key when None)."""

    def end_all(self, reason: str) -> None:
        """End every stream of this process (server shutdown).  Safe from a
        signal handler: the work is scheduled on each loop."""
        for loop, local in tuple(self._locals.items()):
            if not loop.is_closed():
                loop.call_soon_threadsafe(local.end_all, reason)

    # -- figures for health ----------------------------------------------------

    def connection_count(self, session_id: str | None = None) -> int:
        return self._total if session_id is None else self._counts.get(session_id, 0)

    @abstractmethod
    def buffer_info(self, session_id: str) -> BufferInfo: ...

    @abstractmethod
    def is_connected(self) -> bool: ...

    @property
    @abstractmethod
    def listener_running(self) -> bool: ...
