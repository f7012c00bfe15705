"""Server-Sent Events for agent backends: streams, brokers, replay, notifier.

Publish from agent code with ``from sse import notifier``.  What this module
exports is the app's API; the underscored packages are its internals:

- ``sse._http``: the views (the stream, sessions, health);
- ``sse._stream``: event ids and wire format, a stream's queue, the replay
  planner and the fan-out of events to the streams of this process;
- ``sse._transport``: the brokers (in-process or Redis) that carry events
  between processes;
- ``sse._process``: the glue to the process and the server: the ASGI
  handler behind ``sse.asgi``, the grouped middleware, threads for ORM
  work, garbage-collector freezing, shutdown, the log filter behind
  ``sse.logging``;
- ``sse._tasks``: ending tasks without taking the caller's own cancellation
  for theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import (
    BrokerUnavailable,
    EventNotSerializable,
    EventTooLarge,
    InvalidEventType,
    InvalidSessionId,
    SessionNotFound,
    SSEError,
    TooManyConnections,
)

if TYPE_CHECKING:
    from . import notifier
    from ._http.api import AppAPIView
    from ._http.fields import SessionIdField
    from ._http.schema import documented
    from ._http.schema import errors as api_errors
    from ._process.threads import database_sync_to_async
    from ._stream.backlog import BacklogMessage
    from ._stream.backlog import register as register_backlog
    from .errors import api_exception_error, error_body
    from .metrics import add_metrics_collector
    from .models import StreamSession
    from .rows import first_row, row_exists, select_rows, update_rows
    from .sessions import (
        SessionTaken,
        can_read,
        get_or_create_session,
        readable_session,
    )
    from .subscriptions import Subscription, subscribe

__all__ = [
    "AppAPIView",
    "BacklogMessage",
    "BrokerUnavailable",
    "EventNotSerializable",
    "EventTooLarge",
    "InvalidEventType",
    "InvalidSessionId",
    "SSEError",
    "SessionIdField",
    "SessionNotFound",
    "SessionTaken",
    "StreamSession",
    "Subscription",
    "TooManyConnections",
    "add_metrics_collector",
    "api_errors",
    "api_exception_error",
    "broker_backend",
    "can_read",
    "database_sync_to_async",
    "documented",
    "error_body",
    "first_row",
    "get_or_create_session",
    "notifier",
    "readable_session",
    "register_backlog",
    "row_exists",
    "select_rows",
    "subscribe",
    "update_rows",
]

# Imported on first use: Django imports this package while loading apps,
# before models may be imported.
_LAZY: dict[str, tuple[str, str | None]] = {
    "notifier": ("sse.notifier", None),
    "AppAPIView": ("sse._http.api", "AppAPIView"),
    "api_errors": ("sse._http.schema", "errors"),
    "documented": ("sse._http.schema", "documented"),
    "database_sync_to_async": ("sse._process.threads", "database_sync_to_async"),
    "BacklogMessage": ("sse._stream.backlog", "BacklogMessage"),
    "register_backlog": ("sse._stream.backlog", "register"),
    "error_body": ("sse.errors", "error_body"),
    "api_exception_error": ("sse.errors", "api_exception_error"),
    "add_metrics_collector": ("sse.metrics", "add_metrics_collector"),
    "StreamSession": ("sse.models", "StreamSession"),
    "SessionIdField": ("sse._http.fields", "SessionIdField"),
    "SessionTaken": ("sse.sessions", "SessionTaken"),
    "can_read": ("sse.sessions", "can_read"),
    "get_or_create_session": ("sse.sessions", "get_or_create_session"),
    "readable_session": ("sse.sessions", "readable_session"),
    "first_row": ("sse.rows", "first_row"),
    "row_exists": ("sse.rows", "row_exists"),
    "select_rows": ("sse.rows", "select_rows"),
    "update_rows": ("sse.rows", "update_rows"),
    "Subscription": ("sse.subscriptions", "Subscription"),
    "subscribe": ("sse.subscriptions", "subscribe"),
}


def broker_backend() -> str:
    """``"redis"`` or ``"memory"`` (events stay in this process)."""
    from ._stream.hub import get_hub

    return get_hub().broker.backend


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attribute is None else getattr(module, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
