"""Pydantic AI adapter: ``TestModel`` / ``FunctionModel`` call a tool with
``requires_approval=True``, a person answers over HTTP, and the run goes on
with the framework's ``ToolApproved`` / ``ToolDenied``, or stops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from permissions.exceptions import RunAborted
from permissions.integrations.pydantic_ai import AskPermission
from permissions.models import PermissionRequest
from sse.subscriptions import subscribe
from tests.integrations_support import DENIALS, no_network
from tests.permissions_support import orm, published_pending
from tests.test_permissions_agent import answer, messages

pytestmark = pytest.mark.usefixtures("live_db", "no_network")
__all__ = ["no_network"]  # the fixture


written: list[str] = []
agent = Agent(deps_type=str)


@agent.tool_plain(requires_approval=True)
def write_file(path: str) -> str:
    """Write the report to ``path``."""
    written.append(path)
    return f"wrote {path}"


@pytest.fixture(autouse=True)
def _forget_writes() -> None:
    written.clear()


class Script:
    """A model that calls ``write_file`` (once per path), then replies with
    what each call returned; ``returns`` keeps what it read."""

    def __init__(self, *paths: str) -> None:
        self.paths = paths or ("/etc/passwd",)
        self.calls = 0
        self.returns: list[ToolReturnPart] = []
        self.model = FunctionModel(self.respond)

    def respond(self, history: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        if self.calls == 1:
            return ModelResponse(
                parts=[
                    ToolCallPart("write_file", {"path": path}, tool_call_id=f"call_p{n}")
                    for n, path in enumerate(self.paths, 1)
                ]
            )
        self.returns = [part for part in history[-1].parts if isinstance(part, ToolReturnPart)]
        return ModelResponse(parts=[TextPart(" | ".join(str(r.content) for r in self.returns))])


async def test_approved_with_edits_the_tool_runs_with_them(owner: tuple[str, str]) -> None:
    sid, token = owner
    script = Script()
    async with subscribe(sid) as tab:
        run = asyncio.create_task(
            agent.run("save it", model=script.model, capabilities=[AskPermission(session_id=sid)])
        )
        (prompt,) = await messages(tab, "permission_request")
        (row,) = await published_pending(sid)
        assert prompt["data"]["tool_call_id"] == "call_p1"
        assert (row.tool_name, row.arguments, row.tool_call_id, row.key) == (
            "write_file",
            {"path": "/etc/passwd"},
            "call_p1",
            "pydantic-ai:call_p1",
        )
        assert written == []
        status, _ = await answer(token, sid, {"approved": True, "arguments": {"path": "/tmp/r"}})
        assert status == 200
        result = await asyncio.wait_for(run, 10)
    assert written == ["/tmp/r"]
    assert result.output == "wrote /tmp/r"


async def test_with_the_test_model_an_approval_runs_the_call(owner: tuple[str, str]) -> None:
    sid, token = owner
    run = asyncio.create_task(
        agent.run(
            "save it",
            model=TestModel(call_tools=["write_file"]),
            capabilities=[AskPermission(session_id=sid, request_description="Save the report")],
        )
    )
    (row,) = await published_pending(sid)
    assert row.description == "Save the report"
    assert row.tool_call_id == "pyd_ai_tool_call_id__write_file"
    assert (await answer(token, sid, {"approved": True}))[0] == 200
    result = await asyncio.wait_for(run, 10)
    assert written == [row.arguments["path"]]
    assert "wrote" in result.output


@pytest.mark.parametrize(("reason", "seen"), DENIALS)
async def test_the_model_reads_the_denial_reason(
    owner: tuple[str, str], reason: str, seen: str
) -> None:
    sid, token = owner
    script = Script()
    run = asyncio.create_task(
        agent.run("save it", model=script.model, capabilities=[AskPermission(session_id=sid)])
    )
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": False, "reason": reason}))[0] == 200
    result = await asyncio.wait_for(run, 10)
    assert written == []
    (denied,) = script.returns
    assert (denied.content, denied.outcome, denied.tool_call_id) == (seen, "denied", "call_p1")
    assert result.output == seen


async def test_abort_stops_the_run_and_closes_the_other_requests(owner: tuple[str, str]) -> None:
    sid, token = owner
    script = Script("/a", "/b")
    async with subscribe(sid) as tab:
        run = asyncio.create_task(
            agent.run("save", model=script.model, capabilities=[AskPermission(session_id=sid)])
        )
        first, second = await published_pending(sid, 2)
        body = {
            "approved": False,
            "reason": "Stop.",
            "abort": True,
            "request_id": str(first.request_id),
        }
        assert (await answer(token, sid, body))[0] == 200
        with pytest.raises(RunAborted) as raised:
            await asyncio.wait_for(run, 10)
        seen = await messages(tab, "permission_cleared")
        while len([m for m in seen if m["type"] == "permission_cleared"]) < 2:
            seen += await tab.get(5)
    assert raised.value.decision.request_id == str(first.request_id)
    assert written == []
    assert script.calls == 1
    other = await orm(lambda: PermissionRequest.objects.get(pk=second.pk))
    assert (other.status, other.reason) == ("cancelled", "Another call of the run was aborted.")
    cleared = {
        m["data"]["request_id"]: m["data"]["status"]
        for m in seen
        if m["type"] == "permission_cleared"
    }
    assert cleared == {str(first.request_id): "denied", str(second.request_id): "cancelled"}


async def test_both_calls_of_a_turn_are_asked_at_once(owner: tuple[str, str]) -> None:
    sid, token = owner
    script = Script("/a", "/b")
    run = asyncio.create_task(
        agent.run("save", model=script.model, capabilities=[AskPermission(session_id=sid)])
    )
    # Asked at once: the rows' order is not the calls'.
    rows = {row.tool_call_id: row for row in await published_pending(sid, 2)}
    batch = {
        "decisions": [
            {"request_id": str(rows["call_p2"].request_id), "approved": False, "reason": "Not /b."},
            {"request_id": str(rows["call_p1"].request_id), "approved": True},
        ]
    }
    assert (await answer(token, sid, batch))[0] == 200
    result = await asyncio.wait_for(run, 10)
    assert written == ["/a"]
    assert result.output == "wrote /a | Not /b."


async def test_the_session_may_come_from_the_deps(owner: tuple[str, str]) -> None:
    sid, token = owner

    def session_of(ctx: RunContext[Any]) -> str:
        return str(ctx.deps)

    script = Script()
    run = asyncio.create_task(
        agent.run(
            "save",
            model=script.model,
            deps=sid,
            capabilities=[AskPermission(session_id=session_of)],
        )
    )
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": True}))[0] == 200
    await asyncio.wait_for(run, 10)
    assert written == ["/etc/passwd"]
