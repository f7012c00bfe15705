"""Exceptions raised by the ``sse`` app."""

from __future__ import annotations


class SSEError(Exception):
    """Base class of every error the ``sse`` app raises."""


class InvalidSessionId(SSEError, ValueError):
    """A session id is not 1-128 characters of ``[A-Za-z0-9_.:-]``."""


class InvalidEventType(SSEError, ValueError):
    """An event type is malformed or reserved for the server."""


class EventNotSerializable(SSEError, TypeError):
    """Event data is not a dict that JSON can represent."""


class EventTooLarge(SSEError, ValueError):
    """A serialised event is larger than ``MAX_EVENT_BYTES``."""


class BrokerUnavailable(SSEError, ConnectionError):
    """The broker (Redis) cannot be reached; nothing was published."""


class TooManyConnections(SSEError):
    """A connection limit is reached; ``scope`` is ``"session"`` or ``"process"``."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"too many connections for this {scope}")
        self.scope = scope
