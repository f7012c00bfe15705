"""A minimal Redis client for the serving loop: RESP over an asyncio
protocol, parsed by hiredis as the data arrives, on sockets that
``connect.RedisEndpoint`` opened.

The listener's pub/sub socket and the buffer reads use it.  A general
client (redis-py's asyncio one) costs a pool, a connection checkout and
several coroutines per command; during a reconnect storm, thousands of
buffer reads are what the loop does.  Here every read of one loop shares
one pipelined connection: commands are written as they come and the
replies, which Redis sends in order, resolve them in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import hiredis

if TYPE_CHECKING:
    from .connect import Address, RedisEndpoint

CONNECT_TIMEOUT = 5.0
ASKING = b"*1\r\n$6\r\nASKING\r\n"


def command(*args: bytes | str) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespProtocol(asyncio.Protocol):
    """One socket to Redis.  Replies are parsed and handed to ``on_reply``
    in the loop's I/O callback: no task wakes up per read."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parser = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        # Set with the exception that ended the connection.
        self.closed: asyncio.Future[None] = loop.create_future()
        self.on_reply: Callable[[Any], None] = self._unexpected
        self.reads = 0
        self.replies = 0
        self._writer: asyncio.StreamWriter | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def adopt(self, writer: asyncio.StreamWriter) -> None:
        """Take over the transport of a connection redis-py opened; the
        writer is kept because collecting it would close the transport."""
        self._writer = writer
        writer.transport.set_protocol(self)
        self.connection_made(writer.transport)

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        try:
            self.parser.feed(data)
            reply = self.parser.gets()
            while reply is not False:
                self.replies += 1
                self.on_reply(reply)
                reply = self.parser.gets()
        except Exception as exc:
            self._close(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._close(exc or EOFError("Redis closed the connection"))

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _unexpected(self, reply: Any) -> None:
        raise ConnectionError(f"unexpected reply from Redis: {reply!r}")

    def _close(self, exc: BaseException) -> None:
        if not self.closed.done():
            self.closed.set_exception(exc)
            self.closed.exception()  # retrieved: the owner may be gone
        if self.transport is not None:
            self.transport.abort()


class _Pipelined(RespProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.waiting: deque[asyncio.Future[Any]] = deque()

    def send(self, request: bytes) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        self.waiting.append(future)
        self.write(request)
        return future

    def answer(self, reply: Any) -> None:
        future = self.waiting.popleft()
        if not future.done():  # its caller may have given up
            future.set_result(reply)

    def _close(self, exc: BaseException) -> None:
        super()._close(exc)
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"Redis connection lost: {exc}"))


class Commands:
    """Commands of one event loop on one pipelined connection (to
    ``address``, a cluster node), opened on first use and again after it
    failed.  A reply error is returned, not raised (``hiredis.ReplyError``);
    a lost connection or a reply later than ``timeout`` raises
    ``ConnectionError`` for every command in flight."""

    def __init__(
        self,
        endpoint: RedisEndpoint,
        loop: asyncio.AbstractEventLoop,
        address: Address | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self.address = address
        self.timeout = endpoint.socket_timeout
        self._protocol: _Pipelined | None = None
        self._opening: asyncio.Future[_Pipelined] | None = None

    async def call(self, request: bytes, asking: bool = False) -> Any:
        """``asking``: preceded by ``ASKING`` (a slot being migrated), in
        the same write so that no other command comes between."""
        protocol = self._protocol
        if protocol is None or protocol.closed.done():
            protocol = await self._open()
        if asking:
            # Its OK is not awaited; an error is retrieved, as nobody waits for it.
            protocol.send(ASKING).add_done_callback(_retrieved)
        future = protocol.send(request)
        timer = self.loop.call_later(self.timeout, self._late, protocol, future)
        try:
            return await future
        finally:
            timer.cancel()

    def call_soon(self, request: bytes) -> None:
        """Send ``request`` and let its reply (or failure) go unread."""
        protocol = self._protocol
        if protocol is not None and not protocol.closed.done():
            protocol.send(request).add_done_callback(_retrieved)
        else:
            self.loop.create_task(self.call(request)).add_done_callback(_retrieved)

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.abort()
            self._protocol = None

    def _late(self, protocol: _Pipelined, future: asyncio.Future[Any]) -> None:
        if not future.done():
            protocol._close(TimeoutError(f"no reply from Redis within {self.timeout} s"))

    async def _open(self) -> _Pipelined:
        """One connection attempt at a time; concurrent callers share it."""
        if self._opening is None:
            self._opening = self.loop.create_task(self._connect())
            # Retrieved even if every caller gave up meanwhile.
            self._opening.add_done_callback(lambda task: task.cancelled() or task.exception())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        finally:
            if self._opening is opening and opening.done():
                self._opening = None

    async def _connect(self) -> _Pipelined:
        protocol = _Pipelined(self.loop)
        async with asyncio.timeout(CONNECT_TIMEOUT):  # not wait_for: see listener._run
            await self.endpoint.open(protocol, self.address)
        protocol.on_reply = protocol.answer
        self._protocol = protocol
        return protocol


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
