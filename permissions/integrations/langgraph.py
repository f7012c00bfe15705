"""LangGraph: a node pauses the graph with ``interrupt()`` until the people
watching a session decide; the driver answers with ``Command(resume=...)``.

Inside a node, ``review(tool_calls)`` interrupts once for all the calls of a
model turn and returns a ``Decision`` for each, and ``call_tools(tool_calls,
tools)`` goes on to run them: a ``ToolMessage`` per call, the tool's result
(run with the person's arguments) or the denial's reason, which is what the
model reads. ``arun(graph, input, config,
session_id=...)`` (or ``run``) invokes the graph, asks for each pending
review, and resumes it, until the graph ends or stops at an interrupt of
someone else's. This is LangGraph's own human-in-the-loop: the paused graph
is in its checkpoint, so a driver that restarts (``arun(graph, None,
config, ...)``) finds the same interrupt and, through the requests' keys,
the same requests. An abort raises ``RunAborted`` from the driver without
resuming: the thread stays stopped at that node.

A node runs again from its start when it is resumed: call ``review`` before
any side effect, once per turn (one interrupt asking for every call, not one
per call while the others run).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from ._common import Ask, ask_all, call_key, denial, missing

try:
    from langchain_core.messages import ToolMessage
    from langchain_core.runnables import RunnableConfig
    from langgraph.pregel import Pregel
    from langgraph.types import Command, Interrupt, interrupt
except ImportError as exc:  # pragma: no cover - exercised with the framework hidden
    raise missing("LangGraph", "langgraph") from exc

from .._loop import run_blocking
from ..exceptions import RunAborted

if TYPE_CHECKING:
    from ..api import Decision

__all__ = ["RunAborted", "arun", "call_tools", "review", "run"]

# Marks the interrupts this module raises and answers.
KIND = "permission_request"


def review(tool_calls: Sequence[Mapping[str, Any]], *, description: str = "") -> list[Decision]:
    """Inside a node: the decisions on ``tool_calls`` (``{"name", "args",
    "id"}`` each, as in ``AIMessage.tool_calls``), in their order."""
    calls = [
        {"name": call["name"], "args": dict(call.get("args") or {}), "id": call.get("id")}
        for call in tool_calls
    ]
    if not calls:
        return []
    answer = interrupt({"type": KIND, "tool_calls": calls, "description": description})
    return [_decision(data) for data in answer["decisions"]]


def call_tools(
    tool_calls: Sequence[Mapping[str, Any]],
    tools: Mapping[str, Callable[..., Any]],
    *,
    description: str = "",
) -> list[ToolMessage]:
    """Inside a node: :func:`review` the calls, then run the approved ones,
    ``tools[name](**arguments)`` (or ``.invoke(arguments)`` for a LangChain
    tool); a denied call's message carries the reason, with status ``error``."""
    results = []
    for call, decision in zip(tool_calls, review(tool_calls, description=description), strict=True):
        name, call_id = call["name"], str(call.get("id") or "")
        if decision.approved:
            tool = tools[name]
            invoke = getattr(tool, "invoke", None)
            output = invoke(decision.arguments) if invoke else tool(**decision.arguments)
            results.append(ToolMessage(content=str(output), name=name, tool_call_id=call_id))
        else:
            results.append(
                ToolMessage(
                    content=denial(decision, name), name=name, tool_call_id=call_id, status="error"
                )
            )
    return results


async def arun(
    graph: Pregel[Any, Any, Any, Any],
    input: Any,
    config: RunnableConfig,
    *,
    session_id: str,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """``graph.ainvoke(input, config, **kwargs)``, with every ``review`` answered."""
    result = await graph.ainvoke(input, config, **kwargs)
    while pending := _pending((await graph.aget_state(config)).interrupts):
        resume = await _resume(session_id, pending, timeout)
        result = await graph.ainvoke(Command(resume=resume), config, **kwargs)
    return result


def run(
    graph: Pregel[Any, Any, Any, Any],
    input: Any,
    config: RunnableConfig,
    *,
    session_id: str,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """The blocking twin of :func:`arun`: ``graph.invoke``, from sync code."""
    result = graph.invoke(input, config, **kwargs)
    while pending := _pending(graph.get_state(config).interrupts):
        resume = run_blocking(partial(_resume, session_id, pending, timeout))
        result = graph.invoke(Command(resume=resume), config, **kwargs)
    return result


def _pending(interrupts: Sequence[Interrupt]) -> list[Interrupt]:
    return [
        pending
        for pending in interrupts
        if isinstance(pending.value, dict) and pending.value.get("type") == KIND
    ]


async def _resume(
    session_id: str, pending: list[Interrupt], timeout: float | None
) -> dict[str, Any]:
    """``Command(resume=...)`` for the pending reviews: the decisions, by interrupt id."""
    asks: list[Ask] = []
    for paused in pending:
        description = paused.value.get("description", "")
        for n, call in enumerate(paused.value["tool_calls"]):
            call_id = call.get("id")
            # Without a tool call id, the interrupt's id (stable across re-runs) and the position.
            key = call_key("langgraph", call_id or f"{paused.id}:{n}")
            asks.append(Ask(call["name"], call["args"], call_id, key, description, timeout))
    decisions = iter(await ask_all(session_id, asks))
    return {
        paused.id: {"decisions": [next(decisions).as_dict() for _ in paused.value["tool_calls"]]}
        for paused in pending
    }


def _decision(data: Mapping[str, Any]) -> Decision:
    """A ``Decision`` from its ``as_dict()``: checkpoints keep plain data."""
    from ..api import Decision

    values = {f.name: data[f.name] for f in fields(Decision) if f.name in data}
    if isinstance(values.get("decided_at"), str):
        values["decided_at"] = datetime.fromisoformat(values["decided_at"])
    return Decision(**values)
