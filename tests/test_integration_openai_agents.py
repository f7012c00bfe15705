"""OpenAI Agents SDK adapter: a scripted ``Model`` calls a tool that needs
permission, a person answers over HTTP, the run goes on (or stops) accordingly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, RunContextWrapper, Runner, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

from permissions import exceptions
from permissions.integrations.openai_agents import RunAborted, needs_permission
from permissions.models import PermissionRequest
from sse.subscriptions import subscribe
from tests.integrations_support import DENIALS, no_network
from tests.permissions_support import orm, published_pending
from tests.test_permissions_agent import answer, messages

pytestmark = pytest.mark.usefixtures("live_db", "no_network")
__all__ = ["no_network"]  # the fixture


set_tracing_disabled(True)  # traces would be exported over HTTP


class Script:
    """A model that calls ``write_file`` once, then replies with what the tool returned."""

    def __init__(self, call_id: str = "call_w1", path: str = "/etc/passwd") -> None:
        self.model = ScriptedModel(
            [
                [function_call("write_file", {"path": path}, call_id=call_id)],
                ModelStep.respond(self.reply),
            ]
        )
        self.tool_outputs: list[Any] = []

    def reply(self, call: ModelCall) -> list[Any]:
        self.tool_outputs = [
            item["output"] for item in call.input if item.get("type") == "function_call_output"
        ]
        return [assistant_message(f"Tool said: {self.tool_outputs[0]}")]


written: list[str] = []


@function_tool
def write_file(path: str) -> str:
    """Write the report to ``path``."""
    written.append(path)
    return f"wrote {path}"


@pytest.fixture(autouse=True)
def _forget_writes() -> None:
    written.clear()


def agent(script: Script, **kwargs: Any) -> Agent[Any]:
    return Agent(name="writer", model=script.model, tools=[needs_permission(write_file, **kwargs)])


async def test_approved_with_edits_the_tool_runs_with_them(owner: tuple[str, str]) -> None:
    sid, token = owner
    script = Script()
    async with subscribe(sid) as tab:
        run = asyncio.create_task(Runner.run(agent(script), "save it", context={"session_id": sid}))
        (prompt,) = await messages(tab, "permission_request")
        (row,) = await published_pending(sid)
        assert prompt["data"]["tool_call_id"] == "call_w1"
        assert (row.tool_name, row.arguments, row.tool_call_id, row.key) == (
            "write_file",
            {"path": "/etc/passwd"},
            "call_w1",
            "openai-agents:call_w1",
        )
        assert written == []  # nothing runs before the answer
        status, _ = await answer(token, sid, {"approved": True, "arguments": {"path": "/tmp/r"}})
        assert status == 200
        result = await asyncio.wait_for(run, 10)
    assert written == ["/tmp/r"]
    assert script.tool_outputs == ["wrote /tmp/r"]
    assert result.final_output == "Tool said: wrote /tmp/r"


async def test_approved_as_asked_the_tool_runs_as_asked(owner: tuple[str, str]) -> None:
    sid, token = owner
    script = Script()
    run = asyncio.create_task(Runner.run(agent(script, session_id=sid), "save it"))
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": True}))[0] == 200
    await asyncio.wait_for(run, 10)
    assert written == ["/etc/passwd"]


@pytest.mark.parametrize(("reason", "seen"), DENIALS)
async def test_the_model_reads_the_denial_reason(
    owner: tuple[str, str], reason: str, seen: str
) -> None:
    sid, token = owner
    script = Script()
    run = asyncio.create_task(Runner.run(agent(script), "save it", context={"session_id": sid}))
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": False, "reason": reason}))[0] == 200
    result = await asyncio.wait_for(run, 10)
    assert written == []
    assert script.tool_outputs == [seen]
    assert result.final_output == f"Tool said: {seen}"


async def test_abort_stops_the_run(owner: tuple[str, str]) -> None:
    sid, token = owner
    script = Script()
    run = asyncio.create_task(Runner.run(agent(script), "save it", context={"session_id": sid}))
    await published_pending(sid)
    body = {"approved": False, "reason": "Stop everything.", "abort": True}
    assert (await answer(token, sid, body))[0] == 200
    with pytest.raises(RunAborted) as raised:
        await asyncio.wait_for(run, 10)
    assert isinstance(raised.value, exceptions.RunAborted)
    assert (raised.value.decision.abort, raised.value.decision.reason) == (True, "Stop everything.")
    assert str(raised.value) == "Stop everything."
    assert written == []
    assert len(script.model.calls) == 1  # the model was not asked again
    assert script.model.remaining_steps == 1


async def test_a_restarted_run_reattaches_to_its_request(owner: tuple[str, str]) -> None:
    sid, token = owner
    first = asyncio.create_task(Runner.run(agent(Script()), "go", context={"session_id": sid}))
    (asked,) = await published_pending(sid)
    first.cancel()  # the worker died while waiting
    with pytest.raises(asyncio.CancelledError):
        await first
    # The same model turn again (the run resumed from saved state): no second prompt.
    script = Script()
    again = asyncio.create_task(Runner.run(agent(script), "go", context={"session_id": sid}))
    await asyncio.sleep(0.5)  # time for a second prompt, were there one
    (still,) = await published_pending(sid)
    assert (still.pk, still.event_id) == (asked.pk, asked.event_id)
    body = {"approved": True, "request_id": str(asked.request_id)}
    assert (await answer(token, sid, body))[0] == 200
    await asyncio.wait_for(again, 10)
    assert written == ["/etc/passwd"]
    assert await orm(lambda: PermissionRequest.objects.filter(session_id=sid).count()) == 1


async def test_the_session_may_come_from_a_function_of_the_context(
    owner: tuple[str, str],
) -> None:
    sid, token = owner

    def session_of(ctx: RunContextWrapper[Any]) -> str:
        return str(ctx.context.stream)

    class Context:
        stream = sid

    run = asyncio.create_task(
        Runner.run(agent(Script(), session_id=session_of), "go", context=Context())
    )
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": False}))[0] == 200
    await asyncio.wait_for(run, 10)


def test_a_tool_with_the_sdks_own_approval_is_refused() -> None:
    @function_tool(needs_approval=True)
    def shell(cmd: str) -> str:
        """Run ``cmd``."""
        return cmd

    with pytest.raises(ValueError, match="needs_approval"):
        needs_permission(shell)
