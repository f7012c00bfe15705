"""The floor: the least work any Python SSE server could do for our events.

It shows the ceiling of what a Python server can deliver on this machine, so
our server's numbers can be read as a fraction of it.  No framework, no ASGI,
no auth, no replay, no heartbeats, no back-pressure: uvloop, one raw asyncio
Protocol per HTTP connection and one Redis pub/sub socket (RESP written by
hand, parsed by hiredis) for the whole process.

It reads exactly what our publisher sends (``sse.notifier.send``: PUBLISH on
``sse_events:<session id>`` of ``<id>\\n<body>``) and writes the same frame as
our server (``sse._stream.events.render``), close-delimited, to every stream
of the session.  A session is subscribed while it has an open stream; a
stream gets its response head and ``connected`` once Redis confirmed the
subscription.

    python bench/peers/floor.py --port 8000 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from urllib.parse import urlsplit

import hiredis
import uvloop

PREFIX = b"/agent_backend/api/sse/events/"
CHANNEL = b"sse_events:"
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nConnection: close\r\n\r\nretry: 3000\n\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class PubSub(asyncio.Protocol):
    """The Redis socket: SUBSCRIBE/UNSUBSCRIBE out, messages in."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[bytes, set[asyncio.Transport]] = {}  # channel -> live streams
        self.waiting: dict[bytes, list[Stream]] = {}  # channel -> before confirmation

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        raise SystemExit(f"Redis connection lost: {exc!r}")

    def add(self, channel: bytes, stream: Stream) -> None:
        if channel in self.streams:
            stream.start(self.streams[channel])
            return
        waiting = self.waiting.setdefault(channel, [])
        if not waiting:
            self.transport.write(command(b"SUBSCRIBE", channel))  # type: ignore[union-attr]
        waiting.append(stream)

    def remove(self, channel: bytes, transport: asyncio.Transport | None) -> None:
        streams = self.streams.get(channel)
        if streams is not None:
            streams.discard(transport)
            if not streams:
                del self.streams[channel]
                self.transport.write(command(b"UNSUBSCRIBE", channel))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        reply = self.reader.gets()
        while reply is not False:
            kind, channel, payload = reply
            if kind == b"message":
                event_id, _, body = payload.partition(b"\n")
                ms = event_id.partition(b"-")[0]
                frame = b'id: %s\ndata: {"id":"%s",%s,"timestamp":%s}\n\n' % (
                    event_id,
                    event_id,
                    body,
                    ms,
                )
                for transport in self.streams.get(channel, ()):
                    transport.write(frame)
            elif kind == b"subscribe":
                streams = self.streams.setdefault(channel, set())
                for stream in self.waiting.pop(channel, ()):
                    stream.start(streams)
                if not streams:  # every waiting stream closed meanwhile
                    self.remove(channel, None)
            reply = self.reader.gets()


class Stream(asyncio.Protocol):
    """One HTTP connection: a GET of a session's stream, then only writes."""

    __slots__ = ("buf", "channel", "session", "transport")

    pubsub: PubSub

    def __init__(self) -> None:
        self.buf = b""
        self.channel = b""
        self.session = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.channel:
            return  # a stream's client has nothing more to say
        self.buf += data
        if b"\r\n\r\n" not in self.buf:
            return
        parts = self.buf.split(b" ", 2)
        path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
        session = path[len(PREFIX) :]
        if parts[0] != b"GET" or not path.startswith(PREFIX) or not session or b"/" in session:
            self.transport.write(NOT_FOUND)  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]
            return
        self.buf = b""
        self.session = session
        self.channel = CHANNEL + session
        self.pubsub.add(self.channel, self)

    def start(self, streams: set[asyncio.Transport]) -> None:
        """Subscribed: say so, and from now on get the session's events."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        connected = b'data: {"type":"connected","session_id":"%s","timestamp":%d}\n\n' % (
            self.session,
            time.time_ns() // 1_000_000,
        )
        transport.write(HEAD + connected)
        streams.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel and self.transport is not None:
            self.pubsub.remove(self.channel, self.transport)
        self.transport = None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1"))
    args = parser.parse_args()
    url = urlsplit(args.redis_url)
    loop = asyncio.get_running_loop()
    _, pubsub = await loop.create_connection(PubSub, url.hostname or "127.0.0.1", url.port or 6379)
    Stream.pubsub = pubsub
    server = await loop.create_server(Stream, "127.0.0.1", args.port, backlog=8192)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
