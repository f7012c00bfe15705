"""The project wrapped in an ASGI middleware of the kind tracing and error
reporting tools install: it keeps per-request state in a context variable
and bounds every ``send`` with ``asyncio.timeout``.  Such a ``send`` only
works when it is called from a task, in the request's context, one call at
a time; ``GET /_wrapper/report`` tells what it saw."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from agent_backend.asgi import application as project

_request: contextvars.ContextVar[int] = contextvars.ContextVar("request")
_report: dict[str, Any] = {"body_sends": 0, "problems": []}
_requests = iter(range(1, 1 << 62))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/_wrapper/report":
        body = json.dumps(_report).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    number = next(_requests)
    _request.set(number)
    sender: asyncio.Task[Any] | None = None
    sending = False

    async def wrapped_send(message: dict[str, Any]) -> None:
        nonlocal sender, sending
        task = asyncio.current_task()
        if task is None:
            _report["problems"].append("send called outside a task")
        elif sender is None:
            sender = task
        elif task is not sender:
            _report["problems"].append("a second task sends on the same response")
        if _request.get(None) != number:
            _report["problems"].append("send called outside the request's context")
        if sending:
            _report["problems"].append("two sends at once")
        if message["type"] == "http.response.body":
            _report["body_sends"] += 1
        sending = True
        try:
            async with asyncio.timeout(5):
                await send(message)
        finally:
            sending = False

    await project(scope, receive, wrapped_send)
