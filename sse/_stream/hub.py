"""Every open stream of this process: the fan-out of delivered events to the
streams of each event loop, the connection limits, catching streams up after
the broker connection came back, and ending them all at shutdown.

The broker (``sse._transport``) only carries events; it hands them to
:meth:`StreamHub.deliver` and knows nothing of streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading

from .._transport import Broker, make_broker
from ..conf import conf
from ..exceptions import BrokerUnavailable, TooManyConnections
from . import revocation
from .events import ZERO, Event, EventKey
from .queue import Connection
from .replay import BufferRead, Replay, plan_replay

logger = logging.getLogger(__name__)


class _LoopStreams:
    """The connections of one event loop, grouped by session."""

    __slots__ = ("held", "recovering", "sessions", "sweeper")

    def __init__(self) -> None:
        self.sessions: dict[str, set[Connection]] = {}
        # Ends the streams whose access was revoked (``revocation``).
        self.sweeper: asyncio.Task[None] | None = None
        # While catching up after a broker reconnect: live events of each
        # recovering session, delivered after those read from its buffer.
        self.held: dict[str, list[Event]] = {}
        self.recovering: asyncio.Task[None] | None = None


class StreamHub:
    """The streams of one broker in this process."""

    def __init__(self, url: str | None) -> None:
        self._lock = threading.Lock()
        self._loops: dict[asyncio.AbstractEventLoop, _LoopStreams] = {}
        self._counts: dict[str, int] = {}
        self._total = 0
        self.broker: Broker = make_broker(url, self.deliver, self.recover)

    # -- streams, on their event loop ------------------------------------------------

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
        streams = self._streams(conn.loop)
        conns = streams.sessions.setdefault(conn.session_id, set())
        conns.add(conn)
        if conn.user_pk is not None and streams.sweeper is None:
            # In a context of its own: not the first stream's request's.
            streams.sweeper = conn.loop.create_task(
                self._sweep(streams), context=contextvars.Context()
            )
            streams.sweeper.add_done_callback(_log_failure)
        try:
            await self.broker.subscribe(conn.session_id)
        except BaseException:
            self.detach(conn)
            raise

    def detach(self, conn: Connection) -> None:
        """Unregister a stream; idempotent."""
        streams = self._loops.get(conn.loop)
        conns = streams.sessions.get(conn.session_id) if streams is not None else None
        if conns is None or conn not in conns:
            return
        assert streams is not None
        conns.discard(conn)
        if conn.counted:
            with self._lock:
                remaining = self._counts.get(conn.session_id, 1) - 1
                if remaining:
                    self._counts[conn.session_id] = remaining
                else:
                    self._counts.pop(conn.session_id, None)
                self._total -= 1
        if not conns:
            del streams.sessions[conn.session_id]
            self.broker.unsubscribe(conn.session_id, conn.loop)

    async def _sweep(self, streams: _LoopStreams) -> None:
        try:
            await revocation.sweep(
                lambda: [conn for conns in streams.sessions.values() for conn in conns]
            )
        finally:
            if streams.sweeper is asyncio.current_task():
                streams.sweeper = None

    def _streams(self, loop: asyncio.AbstractEventLoop) -> _LoopStreams:
        streams = self._loops.get(loop)
        if streams is None:
            with self._lock:
                # Loops come and go (asyncio.run in agent code): forget closed ones.
                for closed in [other for other in self._loops if other.is_closed()]:
                    del self._loops[closed]
                streams = self._loops.setdefault(loop, _LoopStreams())
        return streams

    # -- what the broker calls, on the loop it subscribed on --------------------------

    def deliver(
        self, loop: asyncio.AbstractEventLoop, session_id: str, events: list[Event]
    ) -> None:
        streams = self._loops.get(loop)
        if streams is None:
            return
        held = streams.held.get(session_id)
        if held is not None:
            held.extend(events)
            return
        for conn in tuple(streams.sessions.get(session_id, ())):
            for event in events:
                conn.offer(event)

    def recover(
        self,
        loop: asyncio.AbstractEventLoop,
        session_ids: list[str],
        subscribed: asyncio.Future[None],
    ) -> None:
        """The broker connection of ``loop`` came back and subscribes to
        ``session_ids`` again (``subscribed`` is done once it has): hold
        their live events and catch their streams up from the buffers."""
        streams = self._streams(loop)
        if streams.recovering is not None:
            streams.recovering.cancel()  # the connection it waited for is gone
        streams.held = {sid: [] for sid in session_ids}
        streams.recovering = loop.create_task(self._catch_up(streams, session_ids, subscribed))
        streams.recovering.add_done_callback(_log_failure)

    async def _catch_up(
        self, streams: _LoopStreams, session_ids: list[str], subscribed: asyncio.Future[None]
    ) -> None:
        """Deliver what was published while the broker connection was away:
        the buffer after each stream's position, then the live events held
        meanwhile, so every stream sees them once and in order."""
        try:
            try:
                await subscribed
            except BrokerUnavailable:
                return  # the connection dropped again; the next one catches up
            for sid in session_ids:
                await self._catch_up_session(streams, sid)
        finally:
            if streams.recovering is asyncio.current_task():
                streams.recovering = None
                streams.held = {}

    async def _catch_up_session(self, streams: _LoopStreams, sid: str) -> None:
        conns = [conn for conn in streams.sessions.get(sid, ()) if conn.live]
        if conns:
            try:
                read = await self.broker.read(sid, min(conn.position for conn in conns))
            except BrokerUnavailable:
                logger.warning("SSE could not catch session %s up: its clients reconnect", sid)
                for conn in conns:
                    conn.end("resync")
            else:
                # Redis keeps no record of the session at all (it restarted
                # without persistence): nothing to replay, and nothing to say
                # the streams missed anything; they carry on.
                forgotten = not read.exists and read.newest is None
                for conn in conns:
                    replay = plan_replay(read, conn.position, whole=False)
                    resync = replay.gap is not None or replay.needs_whole_buffer
                    if conn.counted and resync and not forgotten:
                        # Events this stream never saw are gone: the client
                        # reconnects, and its new stream reports the gap.
                        conn.end("resync")
                        continue
                    for event in replay.events:
                        conn.offer(event)
        # Streams that opened meanwhile read the buffer themselves.
        held = streams.held.pop(sid, [])
        for conn in tuple(streams.sessions.get(sid, ())):
            for event in held:
                conn.offer(event)

    async def replay(self, session_id: str, after: EventKey | None) -> tuple[BufferRead, Replay]:
        """What a client at ``after`` must be sent from the session's buffer
        (``plan_replay``), and the read it was planned on.  Raises
        BrokerUnavailable."""
        read = await self.broker.read(session_id, after)
        replay = plan_replay(read, after)
        if replay.needs_whole_buffer:
            read = await self.broker.read(session_id, ZERO)
            replay = plan_replay(read, after, whole=True)
        return read, replay

    # -- the whole process ------------------------------------------------------------

    def end_all(self, reason: str) -> None:
        """End every stream (server shutdown).  Safe from a signal handler:
        the work is scheduled on each loop."""
        for loop, streams in tuple(self._loops.items()):
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    loop.call_soon_threadsafe(_end_all, streams, reason)

    def connection_count(self, session_id: str | None = None) -> int:
        return self._total if session_id is None else self._counts.get(session_id, 0)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("SSE stream upkeep failed", exc_info=task.exception())


def _end_all(streams: _LoopStreams, reason: str) -> None:
    for conns in tuple(streams.sessions.values()):
        for conn in tuple(conns):
            conn.end(reason)
    if streams.sweeper is not None:
        streams.sweeper.cancel()


_lock = threading.Lock()
_hubs: dict[str | None, StreamHub] = {}


def get_hub() -> StreamHub:
    """The streams and broker of the current ``SSE["REDIS_URL"]`` (one per process)."""
    url = conf.REDIS_URL
    hub = _hubs.get(url)
    if hub is None:
        with _lock:
            hub = _hubs.get(url)
            if hub is None:
                hub = _hubs[url] = StreamHub(url)
    return hub


def all_hubs() -> list[StreamHub]:
    return list(_hubs.values())
