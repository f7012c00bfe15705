"""A server plus a way to publish to it, for both brokers alike."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from sse._stream.events import prepare
from sse._transport import Broker
from sse.testing import EventStream, SSEEvent, open_stream

EVENTS_PATH = "/agent_backend/api/sse/events/"
HEALTH_PATH = "/agent_backend/api/sse/health/"


def events_url(base_url: str, session_id: str, token: str | None = None, **params: str) -> str:
    """The stream URL of a session on a server (``base_url`` may be "")."""
    query = {"token": token, **params} if token is not None else params
    return f"{base_url}{EVENTS_PATH}{session_id}" + ("?" + urlencode(query) if query else "")


def health_url(base_url: str, session_id: str) -> str:
    return f"{base_url}{HEALTH_PATH}{session_id}"


def health_data(base_url: str, session_id: str, token: str, timeout: float = 5.0) -> Any:
    """The ``data`` of a session's health endpoint, asked as its owner."""
    response = httpx.get(
        health_url(base_url, session_id),
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


@dataclass
class Stack:
    """Where streams are read (``base_url``) and how events are published."""

    kind: str
    base_url: str
    broker: Broker
    server: Any

    def events_url(self, session_id: str, token: str | None = None, **params: str) -> str:
        return events_url(self.base_url, session_id, token, **params)

    def publish(self, session_id: str, type: str = "tool_status", data: Any = None) -> str:
        return self.broker.publish(session_id, prepare(session_id, type, data))

    async def apublish(self, session_id: str, type: str = "tool_status", data: Any = None) -> str:
        return await asyncio.to_thread(self.publish, session_id, type, data)

    def open(self, session_id: str, token: str, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", None)
        return open_stream(self.events_url(session_id, token, **kwargs), headers=headers)


MakeStack = Callable[..., Stack]


def messages(events: list[SSEEvent]) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in events]


async def until_connected(stream: EventStream) -> dict[str, Any]:
    event = await stream.next_event()
    message: dict[str, Any] = event.json()
    assert message["type"] == "connected", message
    return message


async def collect_types(
    stream: EventStream, count: int, type: str = "tool_status", timeout: float = 10
) -> list[SSEEvent]:
    """The next ``count`` events of ``type``, skipping heartbeats and the like."""
    found: list[SSEEvent] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(found) < count:
        event = await stream.next_event(timeout=max(0.01, deadline - loop.time()))
        if event.json()["type"] == type:
            found.append(event)
    return found


def raw_get(host: str, port: int, path: str, rcvbuf: int = 4096) -> socket.socket:
    """A GET whose response nobody reads: a client too slow for the stream."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def skip_unless(condition: bool, reason: str) -> None:
    if not condition:
        pytest.skip(reason)
