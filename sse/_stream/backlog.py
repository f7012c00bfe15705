"""Messages a stream delivers on every (re)connect, whatever the buffer
holds: things waiting for a person, such as pending permission requests.

The ``permissions`` app registers a provider for its requests; any app can
(``sse.register_backlog``).  Providers are sync (they usually query the ORM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class BacklogMessage:
    """``event_id`` is the id the message was published with, if any: the
    stream skips it when the replay or the live stream delivers that event."""

    type: str
    data: dict[str, Any]
    timestamp_ms: int
    event_id: str | None = None


BacklogProvider = Callable[[str], list[BacklogMessage]]

_providers: list[BacklogProvider] = []


def register(provider: BacklogProvider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def has_providers() -> bool:
    return bool(_providers)


def collect(session_id: str) -> list[BacklogMessage]:
    messages: list[BacklogMessage] = []
    for provider in _providers:
        messages.extend(provider(session_id))
    return messages


def pending_count(session_id: str) -> int:
    """How many things of the session wait for a person."""
    return len(collect(session_id))
