"""The Redis keys and channel of a session.

Under Redis Cluster each name carries the session id as a hash tag
(``sse_buffer:{abc}``), so every key and the channel of a session live in
one slot: the Lua scripts may touch them together and the channel is
served by the shard that stores them.  One server and Sentinel keep the
names earlier versions used (``sse_buffer:abc``): upgrading a deployment
changes no key, and old and new processes share buffers and channels
during a rolling upgrade.  Session ids cannot contain braces, so the tag
is always the whole id.
"""

from __future__ import annotations

BUFFER_PREFIX = "sse_buffer:"
CHANNEL_PREFIX = "sse_events:"
LAST_PREFIX = "sse_last:"
LEASES_PREFIX = "sse_leases:"
# Which primary stored the session's newest event (replicated topologies).
WRITER_PREFIX = "sse_writer:"


def session_key(prefix: str, session_id: str, tagged: bool = False) -> str:
    """``prefix`` + the session id, as a hash tag when ``tagged`` (cluster)."""
    return f"{prefix}{{{session_id}}}" if tagged else prefix + session_id


def buffer_key(session_id: str, tagged: bool = False) -> str:
    return session_key(BUFFER_PREFIX, session_id, tagged)


def last_key(session_id: str, tagged: bool = False) -> str:
    return session_key(LAST_PREFIX, session_id, tagged)


def writer_key(session_id: str, tagged: bool = False) -> str:
    return session_key(WRITER_PREFIX, session_id, tagged)


def leases_key(session_id: str, tagged: bool = False) -> str:
    """A sorted set: the session's open streams in every process, each
    scored with the time (ms, Redis's clock) its lease runs out."""
    return session_key(LEASES_PREFIX, session_id, tagged)


def channel(session_id: str, tagged: bool = False) -> bytes:
    return session_key(CHANNEL_PREFIX, session_id, tagged).encode()
