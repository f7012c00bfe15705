"""Exceptions raised by the ``sse`` app.  Those a view may raise carry the
HTTP status and error code they are rendered with (``sse.errors``)."""

from __future__ import annotations


class SSEError(Exception):
    """Base class of every error the ``sse`` app raises."""

    status_code = 500
    default_code = "error"


class InvalidSessionId(SSEError, ValueError):
    """A session id is not 1-128 characters of ``[A-Za-z0-9_.:-]``."""

    status_code = 400
    default_code = "invalid_session_id"
    default_detail = "A session id is 1-128 characters of [A-Za-z0-9_.:-]."


class SessionNotFound(SSEError, LookupError):
    """The session does not exist or the caller may not read it (both 404:
    whether it exists is not revealed)."""

    status_code = 404
    default_code = "session_not_found"
    default_detail = "No such session."


class InvalidEventType(SSEError, ValueError):
    """An event type is malformed or reserved for the server."""


class EventNotSerializable(SSEError, TypeError):
    """Event data is not a dict that JSON can represent."""


class EventTooLarge(SSEError, ValueError):
    """A serialised event is larger than ``MAX_EVENT_BYTES``."""


class BrokerUnavailable(SSEError, ConnectionError):
    """The broker (Redis) cannot be reached; nothing was published."""

    status_code = 503
    default_code = "broker_unavailable"


class TooManyConnections(SSEError):
    """A connection limit is reached; ``scope`` is ``"session"`` or ``"process"``."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"too many connections for this {scope}")
        self.scope = scope
