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
import itertools
import logging
import secrets
import threading

from .._transport import Broker, make_broker
from ..conf import conf
from ..exceptions import BrokerUnavailable, TooManyConnections
from . import leases, revocation
from .events import ZERO, Event, EventKey
from .loops import of_loop
from .queue import Connection
from .replay import BufferRead, Replay, plan_catch_up, plan_replay

logger = logging.getLogger(__name__)


class _LoopStreams:
    """The connections of one event loop, grouped by session."""

    __slots__ = ("held", "recovering", "renewer", "sessions", "sweeper")

    def __init__(self) -> None:
        # A tuple, replaced and never changed: the fan-out iterates it
        # without a copy while a stream it wakes may detach, and one stream
        # (the commonest) takes 48 bytes where a set took 216.
        self.sessions: dict[str, tuple[Connection, ...]] = {}
        # Ends the streams whose access was revoked (``revocation``).
        self.sweeper: asyncio.Task[None] | None = None
        # Renews the streams' leases in a shared broker (``leases``).
        self.renewer: asyncio.Task[None] | None = None
        # While catching up after a broker reconnect: live events of each
        # recovering session, delivered after those read from its buffer,
        # and the task catching it up (under Cluster, shards recover apart).
        self.held: dict[str, list[Event]] = {}
        self.recovering: dict[str, asyncio.Task[None]] = {}


class StreamHub:
    """The streams of one broker in this process."""

    def __init__(self, url: str | None) -> None:
        self._lock = threading.Lock()
        self._loops: dict[asyncio.AbstractEventLoop, _LoopStreams] = {}
        self._counts: dict[str, int] = {}
        self._total = 0
        self.broker: Broker = make_broker(url, self.deliver, self.recover, self.fence)
        self._lease_ids = map(f"{secrets.token_hex(6)}:{{}}".format, itertools.count())

    # -- streams, on their event loop ------------------------------------------------

    async def attach(self, conn: Connection) -> None:
        """Register a stream; once this returns, every event published is
        delivered to it.  Raises TooManyConnections or BrokerUnavailable."""
        shared = self.broker.shares_leases
        if conn.counted:
            with self._lock:  # loops of other threads count here too
                if self._total >= conf.MAX_CONNECTIONS:
                    raise TooManyConnections("process")
                count = self._counts.get(conn.session_id, 0)
                if not shared and count >= conf.MAX_CONNECTIONS_PER_SESSION:
                    raise TooManyConnections("session")
                self._counts[conn.session_id] = count + 1
                self._total += 1
        streams = self._streams(conn.loop)
        streams.sessions[conn.session_id] = (*streams.sessions.get(conn.session_id, ()), conn)
        if conn.user_pk is not None and streams.sweeper is None:
            # In a context of its own: not the first stream's request's.
            streams.sweeper = conn.loop.create_task(
                self._sweep(streams), context=contextvars.Context()
            )
            streams.sweeper.add_done_callback(_log_failure)
        try:
            if conn.counted and shared:
                await self._lease(conn, streams)
            await self.broker.subscribe(conn.session_id)
        except BaseException:
            self.detach(conn)
            raise

    async def _lease(self, conn: Connection, streams: _LoopStreams) -> None:
        # Cancelled while Redis takes it, a lease is only given back when it runs out.
        lease = next(self._lease_ids)
        limit = conf.MAX_CONNECTIONS_PER_SESSION
        if not await self.broker.take_lease(conn.session_id, lease, limit, leases.lease_seconds()):
            raise TooManyConnections("session")
        conn.lease = lease
        if streams.renewer is None:
            streams.renewer = conn.loop.create_task(
                self._renew(streams), context=contextvars.Context()
            )
            streams.renewer.add_done_callback(_log_failure)

    def detach(self, conn: Connection) -> None:
        """Unregister a stream; idempotent."""
        streams = self._loops.get(conn.loop)
        conns = streams.sessions.get(conn.session_id) if streams is not None else None
        if conns is None or conn not in conns:
            return
        assert streams is not None
        conns = tuple(other for other in conns if other is not conn)
        if conn.counted:
            with self._lock:
                remaining = self._counts.get(conn.session_id, 1) - 1
                if remaining:
                    self._counts[conn.session_id] = remaining
                else:
                    self._counts.pop(conn.session_id, None)
                self._total -= 1
        if conn.lease is not None:
            self.broker.drop_lease(conn.session_id, conn.lease, conn.loop)
            conn.lease = None
        if conns:
            streams.sessions[conn.session_id] = conns
        else:
            del streams.sessions[conn.session_id]
            self.broker.unsubscribe(conn.session_id, conn.loop)

    async def _renew(self, streams: _LoopStreams) -> None:
        try:
            await leases.keep(self.broker, lambda: _all_connections(streams))
        finally:
            if streams.renewer is asyncio.current_task():
                streams.renewer = None

    async def _sweep(self, streams: _LoopStreams) -> None:
        try:
            await revocation.sweep(lambda: _all_connections(streams))
        finally:
            if streams.sweeper is asyncio.current_task():
                streams.sweeper = None

    def _streams(self, loop: asyncio.AbstractEventLoop) -> _LoopStreams:
        return of_loop(self._loops, self._lock, loop, _LoopStreams)

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
        for conn in streams.sessions.get(session_id, ()):
            for event in events:
                conn.offer(event)

    def fence(self, loop: asyncio.AbstractEventLoop, session_id: str, event: Event) -> None:
        """``event`` is the first a new primary stored for the session (a
        failover): what the old one accepted last may be gone, and nobody
        knows what.  Streams that had not seen the event end ("resync"):
        their clients reconnect, and the replay of the buffer, which holds
        the mark, tells them with replay_gap.  Server-side listeners (an
        agent awaiting a decision) re-read their truth and just get it."""
        streams = self._loops.get(loop)
        if streams is None:
            return
        for conn in streams.sessions.get(session_id, ()):
            # A stream that has seen no event has no position to resume from
            # (a session's first event is marked too): it is owed nothing.
            if conn.counted and (not conn.live or ZERO < conn.position < event.key):
                conn.end("resync")
        self.deliver(loop, session_id, [event])

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
        task = loop.create_task(self._catch_up(streams, session_ids, subscribed))
        task.add_done_callback(_log_failure)
        replaced = set()
        for sid in session_ids:
            # The connection an earlier catch-up waited for is gone: this one takes over.
            if (earlier := streams.recovering.get(sid)) is not None:
                replaced.add(earlier)
            streams.recovering[sid] = task
            streams.held[sid] = []
        if replaced:
            busy = set(streams.recovering.values())
            for earlier in replaced - busy:
                earlier.cancel()

    async def _catch_up(
        self, streams: _LoopStreams, session_ids: list[str], subscribed: asyncio.Future[None]
    ) -> None:
        """Deliver what was published while the broker connection was away:
        the buffer after each stream's position, then the live events held
        meanwhile, so every stream sees them once and in order."""
        task = asyncio.current_task()
        try:
            try:
                await subscribed
            except BrokerUnavailable:
                return  # the connection dropped again; the next one catches up
            for sid in session_ids:
                if streams.recovering.get(sid) is task:
                    await self._catch_up_session(streams, sid, task)
        finally:
            for sid in session_ids:
                if streams.recovering.get(sid) is task:
                    del streams.recovering[sid]
                    streams.held.pop(sid, None)

    async def _catch_up_session(
        self, streams: _LoopStreams, sid: str, task: asyncio.Task[None] | None
    ) -> None:
        conns = [conn for conn in streams.sessions.get(sid, ()) if conn.live]
        if conns:
            read: BufferRead | None
            try:
                read = await self.broker.read(sid, min(conn.position for conn in conns))
            except BrokerUnavailable:
                read = None
            if streams.recovering.get(sid) is not task:
                return  # a later catch-up of the session took over
            if read is None:
                logger.warning("SSE could not catch session %s up: its clients reconnect", sid)
                for conn in conns:
                    conn.end("resync")
            else:
                replicated = self.broker.replicated
                for conn in conns:
                    replay = plan_catch_up(read, conn.position, replicated=replicated)
                    if replay.resync and conn.counted:
                        # The client reconnects, and its new stream reports the gap.
                        conn.end("resync")
                        continue
                    for event in replay.events:
                        conn.offer(event)
        # Streams that opened meanwhile read the buffer themselves.
        del streams.recovering[sid]
        held = streams.held.pop(sid, [])
        for conn in streams.sessions.get(sid, ()):
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
        """This process's streams (of the session)."""
        return self._total if session_id is None else self._counts.get(session_id, 0)

    def session_connections(self, session_id: str) -> int:
        """The session's streams in every process sharing the broker.
        Raises BrokerUnavailable."""
        if self.broker.shares_leases:
            return self.broker.lease_count(session_id)
        return self.connection_count(session_id)


def _all_connections(streams: _LoopStreams) -> list[Connection]:
    return [conn for conns in streams.sessions.values() for conn in conns]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("SSE stream upkeep failed", exc_info=task.exception())


def _end_all(streams: _LoopStreams, reason: str) -> None:
    for conns in tuple(streams.sessions.values()):
        for conn in conns:
            conn.end(reason)
    for task in (streams.sweeper, streams.renewer):
        if task is not None:
            task.cancel()


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
