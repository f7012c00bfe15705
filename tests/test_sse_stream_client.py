"""``sse.testing.open_stream`` against a minimal HTTP server on a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from sse.testing import SSEEvent, SSEProtocolError, StreamEnded, open_stream

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class ScriptedServer:
    """Answers every request by writing what the test pushes, as chunks; None ends it."""

    def __init__(self) -> None:
        self.pushed: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.requests: list[bytes] = []
        self.base_url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        path = head.split(b" ")[1]
        try:
            if path == b"/error":
                body = b'{"success": false}'
                writer.write(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                return
            writer.write(STREAM_HEAD)
            while (data := await self.pushed.get()) is not None:
                writer.write(chunk(data) if path == b"/stream" else data)
                await writer.drain()
            if path == b"/stream":
                writer.write(b"0\r\n\r\n")
        finally:
            await writer.drain()
            writer.close()
            await writer.wait_closed()


@asynccontextmanager
async def scripted_server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    scripted.base_url = f"http://127.0.0.1:{port}"
    async with server:
        yield scripted
        server.close()


async def test_events_arrive_and_a_timeout_does_not_break_the_stream() -> None:
    async with scripted_server() as server:
        server.pushed.put_nowait(b'retry: 3000\n\nid: 1\ndata: {"type":"connected"}\n\n')
        async with open_stream(server.base_url + "/stream", headers={"Last-Event-ID": "0"}) as s:
            assert s.status_code == 200
            assert s.headers["content-type"].startswith("text/event-stream")
            assert await s.next_event() == SSEEvent("message", '{"type":"connected"}', "1", "1")
            assert s.retry == 3000
            with pytest.raises(TimeoutError):
                await s.next_event(timeout=0.1)

            # An event split across writes, and one without an id line.
            server.pushed.put_nowait(b'data: {"type":"heart')
            server.pushed.put_nowait(b'beat"}\n\nid: 2\ndata: {"type":"tool_status"}\n\n')
            server.pushed.put_nowait(b'id: 3\ndata: {"type":"tool_result"}\n\n')
            events = await s.events_until("tool_status")
            assert [(e.id, e.json()["type"]) for e in events] == [
                (None, "heartbeat"),
                ("2", "tool_status"),
            ]
            assert events[0].last_event_id == "1"

            server.pushed.put_nowait(b'id: 4\ndata: {"type":"x"}\n\n')
            assert [e.id for e in await s.collect(2)] == ["3", "4"]

            server.pushed.put_nowait(b'id: 5\ndata: {"type":"last"}\n\n')
            server.pushed.put_nowait(None)
            assert [e.id for e in await s.drain()] == ["5"]
            assert s.closed
            assert s.broken is None
            with pytest.raises(StreamEnded):
                await s.next_event()
        assert b"Last-Event-ID: 0" in server.requests[0]


async def test_a_connection_cut_mid_body_is_reported() -> None:
    async with scripted_server() as server:
        server.pushed.put_nowait(b"20\r\ndata: cut")  # a chunk that never completes
        server.pushed.put_nowait(None)
        async with open_stream(server.base_url + "/raw") as s:
            with pytest.raises(StreamEnded) as ended:
                await s.next_event()
            assert s.broken is not None
            assert ended.value.__cause__ is s.broken


async def test_invalid_utf8_is_a_protocol_error() -> None:
    async with scripted_server() as server:
        server.pushed.put_nowait(b"data: \xff\n\n")
        async with open_stream(server.base_url + "/stream") as s:
            with pytest.raises(SSEProtocolError):
                await s.next_event()


async def test_error_response_body() -> None:
    async with scripted_server() as server:
        stream = await open_stream(server.base_url + "/error")
        try:
            assert stream.status_code == 401
            assert await stream.read() == b'{"success": false}'
            assert stream.json() == {"success": False}
            with pytest.raises(StreamEnded):
                await stream.next_event()
        finally:
            await stream.aclose()


async def test_connection_refused() -> None:
    async with scripted_server() as server:
        url = server.base_url + "/stream"
    # The listening socket is closed: connecting fails at once.
    with pytest.raises(httpx.ConnectError):
        await open_stream(url, timeout=2)


async def test_closing_a_stream_does_not_swallow_the_closers_cancellation() -> None:
    """A cancellation of the task that closes a stream, arriving while the
    stream's reader ends, is raised once the stream is closed."""
    async with scripted_server() as server:
        server.pushed.put_nowait(b'id: 1\ndata: {"type":"connected"}\n\n')
        s = await open_stream(server.base_url + "/stream")
        await s.next_event()
        closing = asyncio.create_task(s.aclose())
        await asyncio.sleep(0)  # aclose is waiting for the reader to end
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert closing.cancelled()
        assert s.response.is_closed
        server.pushed.put_nowait(None)
