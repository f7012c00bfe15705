"""The Redis keys and channel of a session."""

from __future__ import annotations

BUFFER_PREFIX = "sse_buffer:"
CHANNEL_PREFIX = "sse_events:"
LAST_PREFIX = "sse_last:"


def buffer_key(session_id: str) -> str:
    return BUFFER_PREFIX + session_id


def last_key(session_id: str) -> str:
    return LAST_PREFIX + session_id


def channel(session_id: str) -> bytes:
    return (CHANNEL_PREFIX + session_id).encode()
