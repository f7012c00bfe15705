"""Publishing from agent code: ``from sse import notifier``.

Works from async views (``await notifier.asend``), sync views, Celery tasks
and management commands (``notifier.send``).  Each call validates the event,
stores it in the session's buffer and delivers it to every open stream of
the session, in whichever process; it returns the event id.
"""

from __future__ import annotations

from typing import Any

from ._stream.events import prepare
from ._stream.hub import get_hub
from .metrics import EVENTS_PUBLISHED


def send(session_id: str, type: str, data: dict[str, Any] | None = None) -> str:
    event_id = get_hub().broker.publish(session_id, prepare(session_id, type, data))
    EVENTS_PUBLISHED.inc()
    return event_id


async def asend(session_id: str, type: str, data: dict[str, Any] | None = None) -> str:
    event_id = await get_hub().broker.apublish(session_id, prepare(session_id, type, data))
    EVENTS_PUBLISHED.inc()
    return event_id


def tool_status_data(tool_name: str, status: str, **details: Any) -> dict[str, Any]:
    """The ``data`` of a ``tool_status`` event."""
    return {"tool_name": tool_name, "status": status, **details}


def tool_result_data(
    tool_name: str, result: Any = None, *, success: bool = True, **details: Any
) -> dict[str, Any]:
    """The ``data`` of a ``tool_result`` event."""
    return {"tool_name": tool_name, "success": success, "result": result, **details}


def tool_status(session_id: str, tool_name: str, status: str, **details: Any) -> str:
    """``tool_status`` with ``data = {"tool_name", "status", **details}``,
    e.g. ``status="running", progress=0.4, message="Reading files"``."""
    return send(session_id, "tool_status", tool_status_data(tool_name, status, **details))


async def atool_status(session_id: str, tool_name: str, status: str, **details: Any) -> str:
    return await asend(session_id, "tool_status", tool_status_data(tool_name, status, **details))


def tool_result(
    session_id: str, tool_name: str, result: Any = None, *, success: bool = True, **details: Any
) -> str:
    """``tool_result`` with ``data = {"tool_name", "success", "result", **details}``."""
    return send(
        session_id, "tool_result", tool_result_data(tool_name, result, success=success, **details)
    )


async def atool_result(
    session_id: str, tool_name: str, result: Any = None, *, success: bool = True, **details: Any
) -> str:
    return await asend(
        session_id, "tool_result", tool_result_data(tool_name, result, success=success, **details)
    )
