"""The event stream view: ``GET /agent_backend/api/sse/events/{session_id}``."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from rest_framework import exceptions

from . import backlog, pauses, shutdown
from .auth import SessionNotFound, authorize_stream
from .brokers import Broker, get_broker
from .conf import conf
from .connection import ZERO, Connection
from .db import database_sync_to_async, release_request_thread
from .errors import error_response
from .events import EventKey, format_id, is_valid_session_id, parse_id, render_unnumbered
from .events import retry_frame as render_retry
from .exceptions import BrokerUnavailable, TooManyConnections

logger = logging.getLogger(__name__)


async def events(request: HttpRequest, session_id: str) -> HttpResponseBase:
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "Use GET.", headers={"Allow": "GET"})
    if not is_valid_session_id(session_id):
        return error_response(
            400, "invalid_session_id", "A session id is 1-128 characters of [A-Za-z0-9_.:-]."
        )
    last_event_id = (
        request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or ""
    ).strip()
    after = parse_id(last_event_id) if last_event_id else None
    if last_event_id and after is None:
        return error_response(
            400, "invalid_last_event_id", "Last-Event-ID must be an event id like 1732456789123-0."
        )
    try:
        _, expires_at = await database_sync_to_async(authorize_stream)(request, session_id)
    except exceptions.APIException as exc:
        missing = isinstance(exc, exceptions.NotAuthenticated)
        code = "not_authenticated" if missing else "token_invalid"
        return error_response(
            401, code, _detail(exc), headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    except SessionNotFound:
        return error_response(404, "session_not_found", "No such session.")

    broker = get_broker()
    retry_after = str(max(1, conf.RETRY_MS // 1000))
    conn = Connection(session_id, conf.QUEUE_SIZE, asyncio.get_running_loop())
    try:
        await broker.attach(conn)
    except TooManyConnections as exc:
        if exc.scope == "session":
            return error_response(
                429,
                "too_many_connections",
                "Too many open streams for this session.",
                headers={"Retry-After": retry_after},
            )
        return error_response(
            503,
            "server_busy",
            "This server holds too many streams.",
            headers={"Retry-After": retry_after},
        )
    except BrokerUnavailable:
        return _broker_unavailable(retry_after)
    try:
        # Read before saying "connected": from then on, nothing is missed.
        first, sent = await _catch_up(broker, conn, after)
    except BrokerUnavailable:
        broker.detach(conn)
        return _broker_unavailable(retry_after)
    except BaseException:
        broker.detach(conn)
        raise
    shutdown.install()
    if conf.GC_FREEZE:
        pauses.stream_opened(conn.loop)
    conn.on_end = broker.detach
    stream = _stream(broker, conn, first, after, sent, expires_at)
    # Release the connection even if the response is dropped before it starts.
    weakref.finalize(stream, broker.detach, conn)
    return EventStreamResponse(stream, conn)


class EventStreamResponse(StreamingHttpResponse):
    """An open event stream.  The ASGI handler iterates the stream itself:
    its chunks are bytes already, so Django's per-chunk wrapping
    (``StreamingHttpResponse.__aiter__``, an inner generator and
    ``make_bytes``) would only add work to every event.

    A handler that gives ``connection.send`` the server's ASGI ``send``
    before it iterates (``sse.asgi`` does) lets the broker send each event
    to a waiting stream itself; the stream's task then wakes only for
    heartbeats, bursts and the end."""

    def __init__(self, events: AsyncIterator[bytes], connection: Connection) -> None:
        super().__init__(events, content_type="text/event-stream; charset=utf-8")
        self.events = events
        self.connection = connection
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.events


def _broker_unavailable(retry_after: str) -> HttpResponseBase:
    return error_response(
        503,
        "broker_unavailable",
        "The event broker is unavailable.",
        headers={"Retry-After": retry_after},
    )


def _detail(exc: exceptions.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, dict):
        return str(detail.get("detail", "Invalid token."))
    return str(detail)


async def _stream(
    broker: Broker,
    conn: Connection,
    first: bytes,
    after: EventKey | None,
    sent: EventKey,
    expires_at: float,
) -> AsyncIterator[bytes]:
    loop = conn.loop
    session_id = conn.session_id
    conn.task = asyncio.current_task()
    release_request_thread()
    interval = conf.HEARTBEAT_INTERVAL
    expires = loop.time() + (expires_at - time.time())
    try:
        yield (
            render_retry(conf.RETRY_MS)
            + render_unnumbered(
                "connected",
                session_id,
                {"heartbeat_interval": interval, "last_event_id": after and format_id(after)},
            )
            + first
        )
        next_beat = loop.time() + interval
        while True:
            deadline = min(next_beat, expires)
            if conn.alarm_at != deadline:
                conn.set_alarm(deadline)
            waiter = conn.wait()
            if waiter is not None:
                await waiter
            batch = conn.take()
            if conn.sending and conn.ended is None:
                await conn.flush()
            if conn.ended is not None:
                break
            if batch:
                chunk = b"".join([event.frame for event in batch if event.key > sent])
                sent = max(sent, batch[-1].key)
                # Nothing of this batch stays referenced while the stream
                # waits: the collector would have to walk it again and again.
                batch = None
                if chunk:
                    yield chunk
            now = loop.time()
            if now >= expires:
                yield render_unnumbered("token_expired", session_id, {})
                break
            if now >= next_beat:
                yield render_unnumbered("heartbeat")
                next_beat = now + interval
    finally:
        conn.close()
        broker.detach(conn)


async def _catch_up(
    broker: Broker, conn: Connection, after: EventKey | None
) -> tuple[bytes, EventKey]:
    """What a (re)connecting client has to see before live events.

    The connection is subscribed already, so anything newer than this read
    arrives live: no gap, and the key comparison drops duplicates.
    """
    session_id = conn.session_id
    read = await broker.read(session_id, after)
    parts: list[bytes] = []
    if after is None:
        sent = read.newest or ZERO
    else:
        sent = after
        if read.exists:
            unknown = read.newest is not None and read.newest < after
            missed = read.trimmed is not None and read.trimmed > after
        else:
            # Expired: only a client that had seen the newest event missed nothing.
            unknown, missed = False, read.newest != after
        if unknown:
            # An id this buffer never issued (it was reset): replay it all.
            read = await broker.read(session_id, ZERO)
            sent = ZERO
        if unknown or missed:
            parts.append(
                render_unnumbered(
                    "replay_gap",
                    session_id,
                    {
                        "missed_from": format_id(after),
                        "resumed_at": read.events[0].id if read.events else None,
                    },
                )
            )
    replayed = set()
    for event in read.events:
        parts.append(event.frame)
        replayed.add(event.key)
        sent = event.key
    conn.advance(sent)
    conn.live = True
    if backlog.has_providers():
        bound = read.newest or ZERO
        for message in await database_sync_to_async(backlog.collect)(session_id):
            key = parse_id(message.event_id) if message.event_id else None
            if key is not None and (key > bound or key in replayed):
                continue  # delivered by the replay above or by the live stream
            parts.append(
                render_unnumbered(
                    message.type,
                    session_id,
                    message.data,
                    message.timestamp_ms,
                    event_id=message.event_id,
                )
            )
    return b"".join(parts), sent
