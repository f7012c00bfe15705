"""The Redis keys and channel of a session."""

from __future__ import annotations

BUFFER_PREFIX = "sse_buffer:"
CHANNEL_PREFIX = "sse_events:"
LAST_PREFIX = "sse_last:"
LEASES_PREFIX = "sse_leases:"


def buffer_key(session_id: str) -> str:
    return BUFFER_PREFIX + session_id


def last_key(session_id: str) -> str:
    return LAST_PREFIX + session_id


def leases_key(session_id: str) -> str:
    """A sorted set: the session's open streams in every process, each
    scored with the time (ms, Redis's clock) its lease runs out."""
    return LEASES_PREFIX + session_id


def channel(session_id: str) -> bytes:
    return (CHANNEL_PREFIX + session_id).encode()
