"""Test helpers: a strict Server-Sent Events parser and a client for real streams.

``SSEParser`` follows the event-stream interpretation of the WHATWG HTML
standard (section 9.2.6) and additionally records what a browser forgets,
such as whether an event carried its own ``id:`` line. ``open_stream`` reads a
stream over a real socket::

    async with open_stream(f"{base_url}/agent_backend/api/sse/events/{sid}?token={t}") as s:
        assert s.status_code == 200
        connected = await s.next_event()
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from ._tasks import cancel_and_wait

__all__ = [
    "EventStream",
    "SSEEvent",
    "SSEParser",
    "SSEProtocolError",
    "StreamEnded",
    "open_stream",
    "parse_events",
]

DEFAULT_TIMEOUT = 10.0

_END_OF_LINE = re.compile(r"\r\n|\r|\n")


class SSEProtocolError(Exception):
    """Raised by a strict parser when the stream is not a valid event stream."""


class StreamEnded(Exception):
    """Raised when an event is awaited but the stream is over (``EventStream.broken`` says how)."""


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event, as ``EventSource`` would deliver it, plus its ``id:`` line."""

    event: str
    data: str
    # The value of this event's own ``id:`` line; None when the event had none.
    id: str | None
    # What a browser reports as ``lastEventId``: the last id seen on the stream so far.
    last_event_id: str
    # The value of this event's own ``retry:`` line, if it had one.
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEParser:
    """Incremental event-stream parser: ``feed()`` bytes in any chunks, get events back.

    ``strict=True`` raises ``SSEProtocolError`` on bytes that are not UTF-8, where
    a browser would substitute U+FFFD.
    """

    def __init__(self, *, strict: bool = True) -> None:
        self.strict = strict
        # The reconnection time last set by a ``retry:`` line (milliseconds).
        self.retry: int | None = None
        self.last_event_id = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict" if strict else "replace")
        self._started = False
        self._skip_lf = False
        self._pending = ""
        self._event_type = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._feed_text(self._decode(chunk, final=False))

    def close(self) -> list[SSEEvent]:
        """Signal the end of the stream; an event without its blank line is discarded."""
        events = self._feed_text(self._decode(b"", final=True))
        self._pending = ""
        self._reset_event()
        return events

    def _decode(self, chunk: bytes, *, final: bool) -> str:
        try:
            text = self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            raise SSEProtocolError(f"the stream is not valid UTF-8: {exc}") from exc
        if text and not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        return text

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if self._skip_lf and text:
            # The previous chunk ended with CR: a LF opening this one belongs to it.
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[SSEEvent] = []
        buffer = self._pending + text
        line_start = 0
        for match in _END_OF_LINE.finditer(buffer, len(self._pending)):
            if match.end() == len(buffer) and match.group() == "\r":
                self._skip_lf = True
            event = self._process_line(buffer[line_start : match.start()])
            if event is not None:
                events.append(event)
            line_start = match.end()
        self._pending = buffer[line_start:]
        return events

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = self.retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = None
        if self._data:
            event = SSEEvent(
                event=self._event_type or "message",
                data="\n".join(self._data),
                id=self._id,
                last_event_id=self.last_event_id,
                retry=self._retry,
            )
        self._reset_event()
        return event

    def _reset_event(self) -> None:
        self._event_type = ""
        self._data = []
        self._id = None
        self._retry = None


def parse_events(payload: bytes, *, strict: bool = True) -> list[SSEEvent]:
    """Parse a complete stream body at once."""
    parser = SSEParser(strict=strict)
    return parser.feed(payload) + parser.close()


class EventStream:
    """An open response read in the background; events wait in a queue until asked for.

    The body is read as sent on the wire (no content decoding), so a compressed
    stream fails to parse instead of passing unnoticed.
    """

    def __init__(self, url: str, client: httpx.AsyncClient, response: httpx.Response) -> None:
        self.url = url
        self.response = response
        self.raw = bytearray()
        self.parser = SSEParser(strict=True)
        self._client = client
        self._queue: asyncio.Queue[SSEEvent | None] = asyncio.Queue()
        self._seen: list[SSEEvent] = []
        self._error: SSEProtocolError | None = None
        # Set when the connection broke before the response ended properly.
        self.broken: httpx.HTTPError | None = None
        self._ended = False
        self._reader = asyncio.create_task(self._read())

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    @property
    def retry(self) -> int | None:
        return self.parser.retry

    @property
    def last_event_id(self) -> str:
        return self.parser.last_event_id

    @property
    def closed(self) -> bool:
        """True once the server has ended the response."""
        return self._reader.done()

    async def _read(self) -> None:
        is_stream = self.status_code == 200 and self.headers.get("content-type", "").startswith(
            "text/event-stream"
        )
        try:
            async for chunk in self.response.aiter_raw():
                self.raw += chunk
                if is_stream:
                    for event in self.parser.feed(chunk):
                        self._queue.put_nowait(event)
            if is_stream:
                for event in self.parser.close():
                    self._queue.put_nowait(event)
        except SSEProtocolError as exc:
            self._error = exc
        except httpx.HTTPError as exc:
            self.broken = exc
        finally:
            self._queue.put_nowait(None)

    async def next_event(self, timeout: float = DEFAULT_TIMEOUT) -> SSEEvent:
        """The next event; ``TimeoutError`` if none comes in time, ``StreamEnded`` at the end."""
        if self._ended:
            raise self._end_error()
        try:
            async with asyncio.timeout(timeout):
                event = await self._queue.get()
        except TimeoutError:
            raise TimeoutError(
                f"no event within {timeout}s from {self.url}; so far: {self._summary()}"
            ) from None
        if event is None:
            self._ended = True
            raise self._end_error()
        self._seen.append(event)
        return event

    async def events_until(
        self,
        predicate: Callable[[SSEEvent], bool] | str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[SSEEvent]:
        """Events up to and including the first matching one.

        A string predicate matches the ``type`` of the event's JSON payload.
        """
        if isinstance(predicate, str):
            predicate = _has_type(predicate)
        deadline = time.monotonic() + timeout
        events: list[SSEEvent] = []
        while True:
            event = await self.next_event(max(deadline - time.monotonic(), 0))
            events.append(event)
            if predicate(event):
                return events

    async def collect(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> list[SSEEvent]:
        deadline = time.monotonic() + timeout
        return [await self.next_event(max(deadline - time.monotonic(), 0)) for _ in range(n)]

    async def drain(self, timeout: float = DEFAULT_TIMEOUT) -> list[SSEEvent]:
        """Every event left until the server ends the stream."""
        deadline = time.monotonic() + timeout
        events: list[SSEEvent] = []
        while True:
            try:
                events.append(await self.next_event(max(deadline - time.monotonic(), 0)))
            except StreamEnded:
                return events

    async def read(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """The whole body, once the server has ended it (for error responses)."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._reader)
        except TimeoutError:
            raise TimeoutError(f"{self.url} did not end within {timeout}s") from None
        if self._error is not None or self.broken is not None:
            raise self._end_error()
        return bytes(self.raw)

    def json(self) -> Any:
        """The body of an ended non-stream response, parsed."""
        if not self.closed:
            raise RuntimeError("the response is still open; await read() first")
        return json.loads(self.raw)

    async def aclose(self) -> None:
        try:
            await cancel_and_wait([self._reader])
        finally:
            await self.response.aclose()
            await self._client.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _end_error(self) -> Exception:
        if self._error is not None:
            return self._error
        how = f"broke ({self.broken!r})" if self.broken else "ended"
        error = StreamEnded(f"{self.url} {how}; received: {self._summary()}")
        error.__cause__ = self.broken
        return error

    def _summary(self) -> str:
        return repr([event.data[:120] for event in self._seen[-10:]])


def _has_type(message_type: str) -> Callable[[SSEEvent], bool]:
    def predicate(event: SSEEvent) -> bool:
        payload = event.json()
        return isinstance(payload, dict) and payload.get("type") == message_type

    return predicate


class _OpeningStream:
    """What ``open_stream`` returns: await it, or use it with ``async with``."""

    def __init__(self, url: str, headers: Mapping[str, str] | None, timeout: float) -> None:
        self._url = url
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._stream: EventStream | None = None

    async def _open(self) -> EventStream:
        # No read timeout: a quiet stream is legitimate; waits are bounded by next_event().
        client = httpx.AsyncClient(timeout=httpx.Timeout(self._timeout, read=None), trust_env=False)
        try:
            request = client.build_request("GET", self._url, headers=self._headers)
            async with asyncio.timeout(self._timeout):
                response = await client.send(request, stream=True)
        except BaseException:
            await client.aclose()
            raise
        return EventStream(self._url, client, response)

    def __await__(self) -> Generator[Any, None, EventStream]:
        return self._open().__await__()

    async def __aenter__(self) -> EventStream:
        self._stream = await self._open()
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.aclose()


def open_stream(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _OpeningStream:
    """Open ``url`` over a real socket; ``timeout`` bounds connecting and the headers."""
    return _OpeningStream(url, headers, timeout)
