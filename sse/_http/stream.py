"""The event stream view: ``GET /agent_backend/api/sse/events/{session_id}``."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from rest_framework import exceptions

from .. import metrics
from .._process import gc_freeze, shutdown
from .._process.middleware import took_prelude, view_prelude
from .._process.threads import database_sync_to_async, release_request_thread
from .._stream import backlog, tally
from .._stream.backlog import BacklogProvider
from .._stream.events import (
    ZERO,
    EventKey,
    format_id,
    heartbeat,
    is_valid_session_id,
    now_ms,
    parse_id,
    render_unnumbered,
    retry_frame,
)
from .._stream.hub import StreamHub, get_hub
from .._stream.queue import Connection
from ..conf import conf
from ..errors import error_response
from ..exceptions import BrokerUnavailable, InvalidSessionId, SessionNotFound, TooManyConnections
from .auth import StreamAccess, authorize_stream
from .hosts import refuse_disallowed_host

logger = logging.getLogger(__name__)

# Event ids carry the broker's clock (Redis's own, for the Redis broker), the
# backlog probes' time ours: the margin for the difference.
CLOCK_MARGIN_MS = 1000
# A heartbeat due within this share of HEARTBEAT_INTERVAL goes out with the
# events being written, in the same write instead of one of its own, which
# costs as much as an event's: at 5,000 streams with an event every 2.5 s
# each, 91 % of the heartbeats (167 a second at the default 30 s).
BEAT_AHEAD = 0.2


async def events(request: HttpRequest, session_id: str) -> HttpResponseBase:
    response = await _open(request, session_id)
    metrics.STREAM_OPENS.labels(str(response.status_code)).inc()
    return response


async def _open(request: HttpRequest, session_id: str) -> HttpResponseBase:
    refused = _refused(request, session_id)
    if refused is not None:
        return refused
    if conf.GC_FREEZE:
        gc_freeze.stream_arriving(asyncio.get_running_loop())
    last_event_id = _last_event_id(request)
    after = parse_id(last_event_id) if last_event_id else None
    try:
        authorized = took_prelude(request)
        if authorized is None:
            authorized = await database_sync_to_async(_authorize)(request, session_id)
        access, waiting, probed_ms = authorized
    except exceptions.APIException as exc:
        if isinstance(exc, exceptions.NotAuthenticated):
            code = "not_authenticated"
        elif exc.get_codes() == "ticket_invalid":
            code = "ticket_invalid"
        else:
            code = "token_invalid"
        return error_response(
            401, code, _detail(exc), headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    except SessionNotFound:
        return error_response(
            SessionNotFound.status_code,
            SessionNotFound.default_code,
            SessionNotFound.default_detail,
        )

    hub = get_hub()
    retry_after = str(max(1, conf.RETRY_MS // 1000))
    conn = Connection(session_id, conf.QUEUE_SIZE, asyncio.get_running_loop())
    conn.user_pk = access.user.pk
    conn.django_session = access.django_session
    try:
        await hub.attach(conn)
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
        first, sent = await _catch_up(hub, conn, after, waiting, probed_ms)
    except BrokerUnavailable:
        hub.detach(conn)
        return _broker_unavailable(retry_after)
    except BaseException:
        hub.detach(conn)
        raise
    shutdown.install()
    if conf.GC_FREEZE:
        gc_freeze.stream_opened(conn.loop)
    conn.on_end(hub.detach)
    stream = _stream(hub, conn, first, after, sent, access.expires_at)
    # Release the connection even if the response is dropped before it starts.
    weakref.finalize(stream, hub.detach, conn)
    # Compression middleware (GZip) would hold events back until a block
    # fills: the request no longer says it accepts any.
    request.META.pop("HTTP_ACCEPT_ENCODING", None)
    return EventStreamResponse(stream)


class EventStreamResponse(StreamingHttpResponse):
    """An open event stream.  Its chunks are bytes already, so while no
    middleware has replaced the content, the handler iterates the stream
    itself, without Django's per-chunk wrapping (an inner generator and
    ``make_bytes``)."""

    _iterator: AsyncIterator[bytes]

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        super().__init__(events, content_type="text/event-stream; charset=utf-8")
        self._events = self._iterator
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"

    @property
    def streams_alone(self) -> bool:
        """Whether, once the response has started, the stream needs nothing
        but itself: not its request, not its headers (``sse.asgi`` lets
        them go).  Not once a middleware has wrapped its content: the
        wrapper may use either."""
        return self._iterator is self._events

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterator is self._events:
            return self._events
        iterator: AsyncIterator[bytes] = super().__aiter__()
        return iterator


def _refused(request: HttpRequest, session_id: str) -> HttpResponseBase | None:
    """The error response for a request no stream can be opened for."""
    refused = refuse_disallowed_host(request)
    if refused is not None:
        return refused
    if not isinstance(request, ASGIRequest):
        return error_response(
            500,
            "asgi_required",
            "Event streams need an ASGI server (uvicorn, daphne, or daphne's runserver).",
        )
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "Use GET.", headers={"Allow": "GET"})
    if not is_valid_session_id(session_id):
        return error_response(
            InvalidSessionId.status_code,
            InvalidSessionId.default_code,
            InvalidSessionId.default_detail,
        )
    last_event_id = _last_event_id(request)
    if last_event_id and parse_id(last_event_id) is None:
        return error_response(
            400, "invalid_last_event_id", "Last-Event-ID must be an event id like 1732456789123-0."
        )
    return None


def _last_event_id(request: HttpRequest) -> str:
    return (request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "").strip()


Authorized = tuple[StreamAccess, list[BacklogProvider], int]


def _authorize(request: HttpRequest, session_id: str) -> Authorized:
    """Who may open the stream and until when, the backlog providers whose
    probe says they have something for the session, and when the probes ran
    (Unix ms): one hop to the ORM's thread for all three."""
    access = authorize_stream(request, session_id)
    probed_ms = now_ms()
    return access, backlog.waiting(session_id), probed_ms


@view_prelude(events)
def _authorize_on_request_thread(request: HttpRequest, session_id: str) -> Authorized | None:
    """``_authorize`` in the hop of the project's ``process_view`` methods
    (``sse.asgi``): the stream's open takes one hop to a thread fewer.
    Nothing for a request the view refuses before it authorizes (a ticket
    is spent only for a stream that opens)."""
    if _refused(request, session_id) is not None:
        return None
    return _authorize(request, session_id)


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
    hub: StreamHub,
    conn: Connection,
    first: bytes,
    after: EventKey | None,
    sent: EventKey,
    expires_at: float,
) -> AsyncIterator[bytes]:
    """Every frame of the stream, written by the response's own task (the
    one that iterates this), in the request's context."""
    loop = conn.loop
    session_id = conn.session_id
    counts = tally.of(loop)
    conn.owned_by(asyncio.current_task())
    release_request_thread()
    interval = conf.HEARTBEAT_INTERVAL
    ahead = interval * BEAT_AHEAD
    expires = loop.time() + (expires_at - time.time())
    try:
        yield (
            retry_frame(conf.RETRY_MS)
            + render_unnumbered(
                "connected",
                session_id,
                {"heartbeat_interval": interval, "last_event_id": after and format_id(after)},
            )
            + first
        )
        next_beat = loop.time() + interval
        while True:
            deadline = next_beat if next_beat < expires else expires
            if conn.alarm_at != deadline:
                conn.set_alarm(deadline)
            waiter = conn.wait()
            if waiter is not None:
                await waiter
            batch = conn.take()
            if conn.ended is not None:
                if conn.ended == "revoked":
                    yield render_unnumbered("access_revoked", session_id, {})
                break
            if batch:
                if len(batch) == 1:  # the commonest: one event since the last write
                    event = batch[0]
                    delivered = 1 if event.key > sent else 0
                    chunk = event.frame
                    del event
                else:
                    frames = [event.frame for event in batch if event.key > sent]
                    delivered = len(frames)
                    chunk = b"".join(frames)
                    del frames
                if batch[-1].key > sent:
                    sent = batch[-1].key
                # Nothing of this batch stays referenced while the stream
                # waits: the collector would have to walk it again and again.
                batch = None
                if delivered:
                    counts.delivered += delivered
                    now = loop.time()
                    if now >= next_beat - ahead:
                        chunk += heartbeat()
                        next_beat = now + interval
                    yield chunk
            now = loop.time()
            if now >= expires:
                yield render_unnumbered("token_expired", session_id, {})
                break
            if now >= next_beat:
                yield heartbeat()
                next_beat = now + interval
    finally:
        conn.close()
        hub.detach(conn)
        gc_freeze.stream_closed()
        if conn.ended == "overflow":
            metrics.SLOW_CLIENT_DISCONNECTS.inc()


async def _catch_up(
    hub: StreamHub,
    conn: Connection,
    after: EventKey | None,
    waiting: list[BacklogProvider],
    probed_ms: int,
) -> tuple[bytes, EventKey]:
    """What a (re)connecting client has to see before live events.

    The connection is subscribed already, so anything newer than this read
    arrives live: no gap, and the key comparison drops duplicates.
    """
    session_id = conn.session_id
    read, replay = await hub.replay(session_id, after)
    parts: list[bytes] = []
    if replay.gap is not None:
        parts.append(render_unnumbered("replay_gap", session_id, replay.gap.as_data()))
        metrics.REPLAY_GAPS.inc()
    parts.extend(event.frame for event in replay.events)
    tally.of(conn.loop).delivered += len(replay.events)
    conn.go_live(replay.position)
    if read.newest is not None and read.newest[0] >= probed_ms - CLOCK_MARGIN_MS:
        # Published since the probes ran, before this stream subscribed: it
        # may belong to a message (a permission request) they did not see.
        waiting = backlog.all_providers()
    if waiting:
        replayed = {event.key for event in replay.events}
        bound = read.newest or ZERO
        for message in await database_sync_to_async(backlog.collect)(session_id, waiting):
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
    return b"".join(parts), replay.position
