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
BacklogProbe = Callable[[str], bool]

_providers: dict[BacklogProvider, BacklogProbe | None] = {}


def register(provider: BacklogProvider, *, probe: BacklogProbe | None = None) -> None:
    """``probe(session_id)``, if given, says cheaply whether ``provider`` may
    have messages for the session.  A stream asks it while it authorizes
    (on the same thread, in the same hop, before it subscribes) and calls
    ``provider`` only if it says yes: most sessions have nothing waiting.
    If the session's buffer got an event since the probe ran, the stream
    calls every provider anyway: what was published meanwhile may belong
    to a message the probe could not see yet.  Registering a provider again
    replaces its probe."""
    _providers[provider] = probe


def waiting(session_id: str) -> list[BacklogProvider]:
    """The providers that may have messages for the session."""
    return [
        provider for provider, probe in _providers.items() if probe is None or probe(session_id)
    ]


def all_providers() -> list[BacklogProvider]:
    return list(_providers)


def collect(
    session_id: str, providers: list[BacklogProvider] | None = None
) -> list[BacklogMessage]:
    messages: list[BacklogMessage] = []
    for provider in _providers if providers is None else providers:
        messages.extend(provider(session_id))
    return messages


def pending_count(session_id: str) -> int:
    """How many things of the session wait for a person."""
    return len(collect(session_id))
