"""OpenAI Agents SDK: function tools that ask the people watching a session
before each call.

``needs_permission(tool)`` returns a copy of a ``FunctionTool`` whose
``on_invoke_tool`` asks first. The SDK's own approval hook
(``needs_approval`` → ``RunResult.interruptions`` → ``state.approve()`` /
``state.reject()``) has no way to approve with other arguments, and makes
every caller drive a resume loop; the invoker is where all three answers
fit: the tool runs with the person's arguments, a denial's reason becomes
the tool's output (what ``state.reject(rejection_message=...)`` would give
the model), and an abort raises :class:`RunAborted`, an ``AgentsException``,
which ``Runner.run`` propagates unchanged (it wraps any other exception from
a tool in ``UserError``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from ._common import Ask, ask, call_key, denial, missing, session_from

try:
    from agents import FunctionTool, RunContextWrapper
    from agents.exceptions import AgentsException
    from agents.tool_context import ToolContext
except ImportError as exc:  # pragma: no cover - exercised with the SDK hidden
    raise missing("The OpenAI Agents SDK", "openai-agents") from exc

from .. import exceptions

__all__ = ["RunAborted", "needs_permission"]

SessionOf = str | Callable[[RunContextWrapper[Any]], str] | None


class RunAborted(exceptions.RunAborted, AgentsException):
    """A person stopped the run; ``Runner.run`` raises it as it is."""


def needs_permission(
    tool: FunctionTool,
    *,
    session_id: SessionOf = None,
    description: str = "",
    timeout: float | None = None,
) -> FunctionTool:
    """A copy of ``tool`` that asks before each call.

    ``session_id`` is the session to ask in, or a function of the run context
    returning it; by default the run context's ``session_id`` (attribute or
    key: ``Runner.run(agent, input, context={"session_id": ...})``).
    """
    if tool.needs_approval is not False:
        raise ValueError(
            f"{tool.name} has needs_approval set: needs_permission asks instead, use one of them"
        )
    guarded = copy.copy(tool)
    invoke = guarded.on_invoke_tool

    async def ask_then_invoke(ctx: ToolContext[Any], input: str) -> Any:
        arguments = _arguments(input)
        if arguments is None:
            return f"The arguments of {tool.name} are not a JSON object; it did not run."
        call = Ask(
            tool.name,
            arguments,
            ctx.tool_call_id,
            call_key("openai-agents", ctx.tool_call_id),
            description,
            timeout,
        )
        decision = await ask(_session(session_id, ctx), call)
        if decision.abort:
            raise RunAborted(decision)
        if not decision.approved:
            return denial(decision, tool.name)
        return await invoke(ctx, json.dumps(decision.arguments) if decision.edited else input)

    guarded.on_invoke_tool = ask_then_invoke
    return guarded


def _arguments(input: str) -> dict[str, Any] | None:
    try:
        arguments = json.loads(input) if input.strip() else {}
    except ValueError:
        return None
    return arguments if isinstance(arguments, dict) else None


def _session(session_id: SessionOf, ctx: ToolContext[Any]) -> str:
    if isinstance(session_id, str):
        return session_id
    if session_id is not None:
        return session_id(ctx)
    return session_from(ctx.context)
