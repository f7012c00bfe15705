"""One Redis subscriber per process and event loop.

It subscribes to a session's channel when the first local stream of that
session opens and unsubscribes when the last one closes.  When Redis goes
away it reconnects with backoff and subscribes again, and says so
(``recover``): the streams are then caught up from the session buffers, so
an event that Redis accepted while the listener was away is still
delivered.

It speaks RESP directly (``resp``, through hiredis) on a socket that
``connect.RedisEndpoint`` opened: pub/sub needs three commands, and the hot
path stays one parse and one render per event.  Under load it reads events
in batches (``_Subscriber``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.exceptions import RedisError

from .. import metrics
from .._stream.events import Event, render
from .._tasks import cancel_and_wait
from ..conf import conf
from ..exceptions import BrokerUnavailable
from .connect import RedisEndpoint
from .keys import channel as channel_of
from .resp import CONNECT_TIMEOUT, RespProtocol, command

logger = logging.getLogger(__name__)

# Silence this long on the socket triggers a PING; twice as long, a reconnect.
# The URL's health_check_interval, when it has one, replaces it.
IDLE_PING = 15.0
MAX_BACKOFF = 5.0
# From this many messages a second (measured over RATE_WINDOW seconds), the
# listener reads them in batches; see _Subscriber.  At 1,000 a second,
# batches cut the CPU per event from 0.0788 and 0.0716 ms to 0.0580 and
# 0.0572 for 2.1 ms more at the p50 (5,000 streams, two runs each;
# bench/RESULTS.md, thirteenth run).
BUSY_RATE = 500
RATE_WINDOW = 0.01
# While batching, this many messages end a hold before COALESCE_MS does:
# at 2,000 a second a batch takes 4 ms, at 5,000 1.6 ms.  So holds of up to
# 4 ms (the CPU per event at 2,000 a second: 0.0485 and 0.0468 ms, against
# 0.0647 and 0.0417 with 2 ms) leave 5,000 a second a p50 of 1.0 ms, where
# holds of 2 ms gave 1.6 (bench/RESULTS.md, twelfth and thirteenth runs).
BATCH = 8
# Nor do more bytes than this ever wait.
HOLD_BYTES = 1 << 16
# b"!": the first byte of a message a new primary marked (redis.PUBLISH_FENCED).
FENCE = 0x21


class SessionListener:
    """``deliver(session_id, events)`` gets every event of a subscribed
    session, ``fence(session_id, event)`` instead an event a new primary
    marked (Sentinel, ``redis.PUBLISH_FENCED``); ``recover(session_ids,
    subscribed)`` is told after a reconnect."""

    def __init__(
        self,
        endpoint: RedisEndpoint,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[str, list[Event]], None],
        recover: Callable[[list[str], asyncio.Future[None]], None],
        fence: Callable[[str, Event], None],
    ) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self._deliver = deliver
        self._recover = recover
        self._fence = fence
        self.connected = False
        self._connected = asyncio.Event()
        self._protocol: RespProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        # The current subscription of each session: done once Redis confirmed it.
        self._subs: dict[str, asyncio.Future[None]] = {}
        # Per channel, what each (un)subscribe reply still to come answers, in
        # order: a future to resolve, or None for an unsubscribe.
        self._expect: dict[bytes, deque[asyncio.Future[None] | None]] = {}
        self._sids: dict[bytes, str] = {}
        self._pinged = False
        self._watchdog: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = self.loop.create_task(self._run(), name="sse-redis-listener")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    # -- subscriptions, called on the loop ---------------------------------------

    async def ensure(self, session_id: str) -> None:
        """Return once Redis has confirmed the subscription to the session."""
        try:
            if not self._connected.is_set():
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._connected.wait()
        except TimeoutError as exc:
            raise BrokerUnavailable("Redis did not confirm the subscription") from exc
        future = self._subs.get(session_id)
        if future is None:
            future = self._subscribe([session_id])[0]
        if not future.done():
            # Not wait_for(shield(...)): no task per stream during a storm.
            await asyncio.wait([future], timeout=CONNECT_TIMEOUT)
            if not future.done():
                raise BrokerUnavailable("Redis did not confirm the subscription")
        future.result()  # raises BrokerUnavailable if the connection dropped

    def release(self, session_id: str) -> None:
        if self._subs.pop(session_id, None) is None or self._protocol is None:
            return
        channel = channel_of(session_id)
        self._expect.setdefault(channel, deque()).append(None)
        self._protocol.write(command(b"UNSUBSCRIBE", channel))

    def _subscribe(self, session_ids: list[str]) -> list[asyncio.Future[None]]:
        if self._protocol is None:
            raise BrokerUnavailable("Redis connection lost")
        futures = []
        channels = []
        for sid in session_ids:
            channel = channel_of(sid)
            future = self.loop.create_future()
            self._subs[sid] = future
            self._sids[channel] = sid
            self._expect.setdefault(channel, deque()).append(future)
            futures.append(future)
            channels.append(channel)
        self._protocol.write(command(b"SUBSCRIBE", *channels))
        return futures

    # -- the connection ------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        recovering = False
        while True:
            try:
                # Not wait_for: on Python 3.11 it returns the connection
                # when a cancellation (close()) comes in the turn it completes.
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    protocol = await self._open()
                self._protocol = protocol
                sessions = list(self._subs) if recovering else []
                self._subs = {}
                self._sids = {}
                futures = self._subscribe(sessions) if sessions else []
                self.connected = True
                self._connected.set()
                if recovering:
                    metrics.BROKER_RECONNECTS.inc()
                    logger.info("SSE Redis listener reconnected; %d sessions", len(sessions))
                    if futures:
                        self._recover(sessions, _all_of(self.loop, futures))
                backoff = 0.1
                await self._receive(protocol)
            except asyncio.CancelledError:
                raise
            except (OSError, EOFError, TimeoutError, RedisError, hiredis.ProtocolError) as exc:
                logger.warning("SSE Redis listener lost its connection: %s", exc)
            except Exception:
                logger.exception("SSE Redis listener failed")
            finally:
                self._disconnected()
            recovering = True
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _disconnected(self) -> None:
        self.connected = False
        self._connected.clear()
        error = BrokerUnavailable("Redis connection lost")
        for expected in self._expect.values():
            for future in expected:
                if future is not None and not future.done():
                    future.set_exception(error)
                    future.exception()  # retrieved: nobody may be waiting
        self._expect.clear()
        # The sessions stay wanted: the next connection subscribes again.
        self._subs = {sid: self.loop.create_future() for sid in self._subs}
        for future in self._subs.values():
            future.set_exception(error)
            future.exception()
        if self._protocol is not None:
            self._protocol.abort()
            self._protocol = None

    async def _open(self) -> RespProtocol:
        protocol = _Subscriber(self.loop, conf.COALESCE_MS / 1000)
        await self.endpoint.open(protocol)
        return protocol

    async def _receive(self, protocol: RespProtocol) -> None:
        """Serve the socket until it fails; replies are handled as they arrive."""
        protocol.on_reply = self._on_reply
        self._watch(protocol.reads - 1)
        try:
            await protocol.closed
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None

    def _on_reply(self, reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise ConnectionError(f"Redis replied with an error: {reply}")
        kind = reply[0]
        if kind == b"message":
            payload = reply[2]
            sid = self._sids.get(reply[1])
            if sid is not None:
                split = payload.index(b"\n")
                if payload[0] == FENCE:
                    self._fence(sid, render(payload[1:split], payload[split + 1 :]))
                else:
                    self._deliver(sid, [render(payload[:split], payload[split + 1 :])])
        elif kind == b"subscribe" or kind == b"unsubscribe":
            self._acknowledged(reply[1])

    def _watch(self, reads_before: int) -> None:
        """Every IDLE_PING seconds (or the URL's ``health_check_interval``):
        a silent socket gets a PING, and is dropped (so the listener
        reconnects) if it stays silent.  One timer per listener instead of a
        timeout around every read."""
        protocol = self._protocol
        if protocol is None:
            return
        if protocol.reads == reads_before:
            if self._pinged:
                logger.warning("SSE Redis listener: no answer to PING, reconnecting")
                protocol.abort()
                return
            protocol.write(command(b"PING"))
            self._pinged = True
        else:
            self._pinged = False
        interval = self.endpoint.health_check_interval(IDLE_PING)
        self._watchdog = self.loop.call_later(interval, self._watch, protocol.reads)

    def _acknowledged(self, channel: bytes) -> None:
        expected = self._expect.get(channel)
        if not expected:
            return
        future = expected.popleft()
        if not expected:
            del self._expect[channel]
            if self._sids.get(channel) not in self._subs:
                self._sids.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)


def _all_of(
    loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[None]]
) -> asyncio.Future[None]:
    """Done when every subscription is confirmed, or failed with the first error."""
    together: asyncio.Future[None] = loop.create_future()

    def settle(gathered: asyncio.Future[list[None]]) -> None:
        # Retrieved even when nobody waits any more.
        error = None if gathered.cancelled() else gathered.exception()
        if together.done():
            return
        if gathered.cancelled():
            together.cancel()
        elif error is not None:
            together.set_exception(error)
            together.exception()
        else:
            together.set_result(None)

    asyncio.gather(*futures).add_done_callback(settle)
    return together


class _Subscriber(RespProtocol):
    """The listener's socket.  At BUSY_RATE messages a second or more, what
    arrives is left in the kernel until BATCH messages are there or for up
    to ``hold`` seconds, whichever comes first, before it wakes the process:
    the socket's receive low-water mark (``SO_RCVLOWAT``) is raised to the
    bytes of BATCH messages of the size seen lately, and a timer lowers it
    again.  One wake-up then reads several messages instead of one each; on
    a loop that is otherwise idle, waking up is the largest cost of a
    message (bench/RESULTS.md, thirteenth run).  Below that rate,
    on unix sockets (whose low-water mark does not hold back readiness), off
    Linux (where lowering the mark may not wake the reader) and where the
    option is refused, each message is read as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hold: float) -> None:
        super().__init__(loop)
        self.hold = hold
        self._sock: socket.socket | None = None
        self._since = loop.time()
        self._counted = 0
        self._received = 0  # bytes
        self._received_counted = 0
        self._mark = HOLD_BYTES
        self._busy = False
        self._release_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if (
            self.hold <= 0
            or not sys.platform.startswith("linux")
            or sock is None
            or sock.family not in (socket.AF_INET, socket.AF_INET6)
        ):
            return
        # Not every loop lets the transport's socket object be used, and
        # uvloop closes its descriptor before connection_lost(): a duplicate
        # descriptor shares the socket's options and stays valid until _close.
        dup = None
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
            dup.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        except OSError as exc:
            logger.info("SSE Redis listener reads every event as it arrives: %s", exc)
            if dup is not None:
                dup.close()
            return
        self._sock = dup

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._sock is None:  # not batching, or closed (_close drops it)
            return
        self._received += len(data)
        now = self.loop.time()
        elapsed = now - self._since
        if elapsed >= RATE_WINDOW:
            messages = self.replies - self._counted
            self._busy = messages >= BUSY_RATE * elapsed
            if messages:
                size = (self._received - self._received_counted) // messages
                self._mark = max(1, min(HOLD_BYTES, size * BATCH))
            self._since, self._counted = now, self.replies
            self._received_counted = self._received
        if not self._busy:
            return
        if self._release_timer is not None:
            # Read before the hold ran out (the mark was reached): the mark
            # stays up and the next batch gets a hold of its own.
            self._release_timer.cancel()
        else:
            self._low_water(self._mark)
        if self._sock is not None:  # else the connection is closing
            self._release_timer = self.loop.call_at(now + self.hold, self._release)

    def _release(self) -> None:
        """Messages held back become readable: lowering the mark signals
        the socket as readable at once if anything is waiting (Linux)."""
        self._release_timer = None
        self._low_water(1)  # the timer is armed with _sock and cancelled by _close

    def _low_water(self, nbytes: int) -> None:
        assert self._sock is not None
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
        except OSError as exc:
            # Messages may be held back with nothing left to release them:
            # drop the connection, and the listener catches up after it.
            self._close(exc)

    def _close(self, exc: BaseException) -> None:
        super()._close(exc)
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
