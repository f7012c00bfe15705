"""Pydantic AI: a capability that answers a run's approval requests by asking
the people watching a session.

Tools declare that they need approval the Pydantic AI way
(``requires_approval=True``, raising ``ApprovalRequired``, or an
``ApprovalRequiredToolset``); ``AskPermission`` is the run's
``handle_deferred_tool_calls`` hook (the one ``HandleDeferredToolCalls``
uses), so the run goes on once the person answers instead of ending with
``DeferredToolRequests`` for the caller to resume. Its answers are the
framework's own: ``ToolApproved(override_args=...)`` for edits,
``ToolDenied(message=...)`` with the reason the model reads; an abort raises
``RunAborted`` out of ``agent.run()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._common import Ask, ask_all, call_key, denial, missing

try:
    from pydantic_ai import RunContext
    from pydantic_ai.capabilities import AbstractCapability
    from pydantic_ai.messages import ToolCallPart
    from pydantic_ai.tools import (
        DeferredToolRequests,
        DeferredToolResults,
        ToolApproved,
        ToolDenied,
    )
except ImportError as exc:  # pragma: no cover - exercised with the framework hidden
    raise missing("Pydantic AI", "pydantic-ai") from exc

from ..exceptions import RunAborted

if TYPE_CHECKING:
    from ..api import Decision

__all__ = ["AskPermission", "RunAborted"]


@dataclass(kw_only=True)
class AskPermission(AbstractCapability[Any]):
    """Ask the people watching ``session_id`` about each tool call that needs
    approval: ``agent.run(..., capabilities=[AskPermission(session_id=sid)])``.

    ``session_id`` may be a function of the run context (say, of its deps)
    for a capability given to the ``Agent`` itself. ``request_description``
    is shown to the person with each request (``description`` is taken: it
    describes the capability itself).
    """

    session_id: str | Callable[[RunContext[Any]], str]
    request_description: str = ""
    timeout: float | None = None

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # takes live values (a callable), not a spec

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[Any], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        if not requests.approvals:
            return None  # external calls: for another capability, or the caller
        session_id = self.session_id if isinstance(self.session_id, str) else self.session_id(ctx)
        asks = [self._ask(call) for call in requests.approvals]
        decisions = await ask_all(session_id, asks)
        return requests.build_results(
            approvals={
                call.tool_call_id: _answer(call, decision)
                for call, decision in zip(requests.approvals, decisions, strict=True)
            },
            answered_by={
                call.tool_call_id: _answered_by(decision)
                for call, decision in zip(requests.approvals, decisions, strict=True)
            },
        )

    def _ask(self, call: ToolCallPart) -> Ask:
        return Ask(
            call.tool_name,
            call.args_as_dict(),
            call.tool_call_id,
            call_key("pydantic-ai", call.tool_call_id),
            self.request_description,
            self.timeout,
        )


def _answer(call: ToolCallPart, decision: Decision) -> ToolApproved | ToolDenied:
    if not decision.approved:
        return ToolDenied(denial(decision, call.tool_name))
    return ToolApproved(override_args=decision.arguments if decision.edited else None)


def _answered_by(decision: Decision) -> str:
    # A username, "rule:<id>" / "policy:<path>", or "expired" / "cancelled".
    return decision.decided_by or decision.decided_by_rule or decision.status
