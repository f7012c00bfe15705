"""What the adapters share: the key a tool call is asked under, the text the
model sees for a denial, and asking for one model turn's calls at once.

Nothing here imports a framework; ``permissions.api`` is imported when a
request is made, so an adapter can be imported before Django is set up.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidPermissionRequest, RunAborted

if TYPE_CHECKING:
    from ..api import Decision

# PermissionRequest.key and .tool_call_id hold at most 200 characters.
_MAX = 200


def missing(framework: str, extra: str) -> ImportError:
    return ImportError(
        f"{framework} is not installed: pip install 'agent-sse[{extra}]' "
        f"(the {extra!r} extra) to use this adapter."
    )


def call_key(framework: str, tool_call_id: str) -> str:
    """The request's key: one tool call is asked once per session, however
    often a restarted run reaches it."""
    key = f"{framework}:{tool_call_id}"
    if len(key) <= _MAX:
        return key
    return f"{framework}:sha256:{hashlib.sha256(tool_call_id.encode()).hexdigest()}"


def denial(decision: Decision, tool_name: str) -> str:
    """What the model is told instead of the tool's result."""
    return decision.reason or f"Permission to run {tool_name} was denied."


def session_from(context: Any) -> str:
    """``context.session_id``, or ``context["session_id"]``."""
    session_id = getattr(context, "session_id", None)
    if session_id is None and isinstance(context, dict):
        session_id = context.get("session_id")
    if not isinstance(session_id, str):
        raise InvalidPermissionRequest(
            "No session id: pass session_id=, or run with a context whose session_id is set."
        )
    return session_id


@dataclass(frozen=True, slots=True)
class Ask:
    """One tool call to ask about."""

    tool_name: str
    arguments: dict[str, Any]
    tool_call_id: str | None
    key: str
    description: str = ""
    timeout: float | None = None


async def ask(session_id: str, call: Ask) -> Decision:
    from ..api import arequest_permission

    return await arequest_permission(
        session_id,
        call.tool_name,
        call.arguments,
        timeout=call.timeout,
        description=call.description,
        # Shown to the person and audited; the key keeps the whole id.
        tool_call_id=call.tool_call_id[:_MAX] if call.tool_call_id else None,
        key=call.key,
    )


async def ask_all(session_id: str, calls: list[Ask]) -> list[Decision]:
    """The decisions on the calls of one model turn, asked at once.

    An abort raises ``RunAborted`` as soon as it arrives, and the calls still
    pending are cancelled, so their dialogs close in every tab rather than wait
    for a run that has stopped.
    """
    tasks = [asyncio.ensure_future(ask(session_id, call)) for call in calls]
    try:
        for done in asyncio.as_completed(tasks):
            decision = await done
            if decision.abort:
                undecided = [c for c, t in zip(calls, tasks, strict=True) if not t.done()]
                await _stop(tasks)
                await _cancel(session_id, undecided)
                raise RunAborted(decision)
    except BaseException:
        await _stop(tasks)
        raise
    return [task.result() for task in tasks]


async def _stop(tasks: Sequence[asyncio.Future[Decision]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _cancel(session_id: str, calls: list[Ask]) -> None:
    # A keyed wait that is cancelled leaves its request pending for the run's
    # next attempt; this run will not have one.
    from sse import database_sync_to_async

    from ..announce import aannounce
    from ..models import PermissionRequest, Status

    rows = await database_sync_to_async(
        lambda: list(
            PermissionRequest.objects.filter(
                session_id=session_id, key__in=[call.key for call in calls], status=Status.PENDING
            )
        )
    )()
    for row in rows:
        if await database_sync_to_async(row.cancel)("Another call of the run was aborted."):
            await aannounce(row)
