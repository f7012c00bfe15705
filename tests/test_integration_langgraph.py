"""LangGraph adapter: a graph of plain-Python nodes (a scripted "model" and a
tools node) pauses with ``interrupt()``; the driver asks, a person answers over
HTTP, and the graph resumes with ``Command(resume=...)``, or stays stopped."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.pregel import Pregel

from permissions.exceptions import RunAborted
from permissions.integrations.langgraph import arun, call_tools, review, run
from permissions.models import PermissionRequest
from sse.subscriptions import subscribe
from tests.integrations_support import DENIALS, no_network
from tests.permissions_support import orm, published_pending
from tests.test_permissions_agent import answer, messages

pytestmark = pytest.mark.usefixtures("live_db", "no_network")
__all__ = ["no_network"]  # the fixture


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


written: list[str] = []


def write_file(path: str) -> str:
    written.append(path)
    return f"wrote {path}"


class Graph:
    """model → tools → model: the model calls ``write_file`` once per path,
    then says what the tools answered."""

    def __init__(self, *paths: str) -> None:
        self.paths = paths or ("/etc/passwd",)
        self.model_turns = 0
        builder = StateGraph(State)
        builder.add_node("model", self.model)
        builder.add_node("tools", self.tools)
        builder.add_edge(START, "model")
        builder.add_conditional_edges(
            "model", lambda s: "tools" if s["messages"][-1].tool_calls else END
        )
        builder.add_edge("tools", "model")
        self.graph: Pregel[Any, Any, Any, Any] = builder.compile(checkpointer=InMemorySaver())
        self.config: RunnableConfig = {"configurable": {"thread_id": "t1"}}

    def model(self, state: State) -> dict[str, Any]:
        self.model_turns += 1
        if self.model_turns == 1:
            calls = [
                {"name": "write_file", "args": {"path": p}, "id": f"call_g{n}", "type": "tool_call"}
                for n, p in enumerate(self.paths, 1)
            ]
            return {"messages": [AIMessage(content="", tool_calls=calls)]}
        said = [m for m in state["messages"] if isinstance(m, ToolMessage)]
        return {"messages": [AIMessage(content=" | ".join(str(m.content) for m in said))]}

    def tools(self, state: State) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        return {"messages": call_tools(last.tool_calls, {"write_file": write_file})}

    def start(self, sid: str) -> asyncio.Task[Any]:
        question = {"messages": [HumanMessage("save it")]}
        return asyncio.create_task(arun(self.graph, question, self.config, session_id=sid))

    def tool_messages(self) -> list[ToolMessage]:
        values = self.graph.get_state(self.config).values
        return [m for m in values["messages"] if isinstance(m, ToolMessage)]


@pytest.fixture(autouse=True)
def _forget_writes() -> None:
    written.clear()


async def test_approved_with_edits_the_tool_runs_with_them(owner: tuple[str, str]) -> None:
    sid, token = owner
    graph = Graph()
    async with subscribe(sid) as tab:
        running = graph.start(sid)
        (prompt,) = await messages(tab, "permission_request")
        (row,) = await published_pending(sid)
        assert prompt["data"]["tool_call_id"] == "call_g1"
        assert (row.tool_name, row.arguments, row.tool_call_id, row.key) == (
            "write_file",
            {"path": "/etc/passwd"},
            "call_g1",
            "langgraph:call_g1",
        )
        assert graph.graph.get_state(graph.config).next == ("tools",)  # paused at the interrupt
        status, _ = await answer(token, sid, {"approved": True, "arguments": {"path": "/tmp/r"}})
        assert status == 200
        result = await asyncio.wait_for(running, 10)
    assert written == ["/tmp/r"]
    assert result["messages"][-1].content == "wrote /tmp/r"
    assert graph.graph.get_state(graph.config).next == ()


@pytest.mark.parametrize(("reason", "seen"), DENIALS)
async def test_the_model_reads_the_denial_reason(
    owner: tuple[str, str], reason: str, seen: str
) -> None:
    sid, token = owner
    graph = Graph()
    running = graph.start(sid)
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": False, "reason": reason}))[0] == 200
    result = await asyncio.wait_for(running, 10)
    assert written == []
    (denied,) = graph.tool_messages()
    assert (denied.content, denied.status, denied.tool_call_id) == (seen, "error", "call_g1")
    assert result["messages"][-1].content == seen


async def test_abort_stops_the_run_at_the_interrupt(owner: tuple[str, str]) -> None:
    sid, token = owner
    graph = Graph("/a", "/b")
    running = graph.start(sid)
    first, second = await published_pending(sid, 2)
    body = {"approved": False, "abort": True, "request_id": str(second.request_id)}
    assert (await answer(token, sid, body))[0] == 200
    with pytest.raises(RunAborted) as raised:
        await asyncio.wait_for(running, 10)
    assert raised.value.decision.request_id == str(second.request_id)
    assert written == []
    assert graph.model_turns == 1
    # The thread is left paused where it was: nothing ran after the interrupt.
    assert graph.graph.get_state(graph.config).next == ("tools",)
    assert graph.tool_messages() == []
    other = await orm(lambda: PermissionRequest.objects.get(pk=first.pk))
    assert other.status == "cancelled"


async def test_a_restarted_driver_reattaches_to_the_paused_graph(owner: tuple[str, str]) -> None:
    sid, token = owner
    graph = Graph("/a", "/b")
    first = graph.start(sid)
    asked = await published_pending(sid, 2)
    first.cancel()  # the worker died while waiting
    with pytest.raises(asyncio.CancelledError):
        await first
    assert [r.status for r in await published_pending(sid, 2)] == ["pending", "pending"]
    # A new driver on the same thread: the checkpoint has the interrupt, the keys the requests.
    again = asyncio.create_task(arun(graph.graph, None, graph.config, session_id=sid))
    await asyncio.sleep(0.3)  # time for second prompts, were there any
    assert [r.event_id for r in await published_pending(sid, 2)] == [r.event_id for r in asked]
    batch = {"decisions": [{"request_id": str(r.request_id), "approved": True} for r in asked]}
    assert (await answer(token, sid, batch))[0] == 200
    result = await asyncio.wait_for(again, 10)
    assert written == ["/a", "/b"]
    assert result["messages"][-1].content == "wrote /a | wrote /b"
    assert await orm(lambda: PermissionRequest.objects.filter(session_id=sid).count()) == 2


async def test_the_blocking_driver(owner: tuple[str, str]) -> None:
    sid, token = owner
    graph = Graph()
    question = {"messages": [HumanMessage("save it")]}
    running = asyncio.create_task(
        asyncio.to_thread(run, graph.graph, question, graph.config, session_id=sid)
    )
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": True}))[0] == 200
    result = await asyncio.wait_for(running, 10)
    assert written == ["/etc/passwd"]
    assert result["messages"][-1].content == "wrote /etc/passwd"


async def test_review_returns_the_decisions_to_the_node(owner: tuple[str, str]) -> None:
    sid, token = owner
    seen: list[Any] = []

    def node(state: dict[str, Any]) -> dict[str, Any]:
        seen[:] = review([{"name": "deploy", "args": {"env": "prod"}}], description="Ship it")
        return {}

    builder = StateGraph(dict)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    graph = builder.compile(checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "t2"}}
    running = asyncio.create_task(arun(graph, {}, config, session_id=sid))
    (row,) = await published_pending(sid)
    # No tool call id: keyed by the interrupt's id, which a re-run keeps.
    assert (row.description, row.tool_call_id, row.key.startswith("langgraph:")) == (
        "Ship it",
        "",
        True,
    )
    assert (await answer(token, sid, {"approved": True, "arguments": {"env": "staging"}}))[0] == 200
    await asyncio.wait_for(running, 10)
    (decision,) = seen
    assert (decision.approved, decision.edited, decision.arguments) == (
        True,
        True,
        {"env": "staging"},
    )
    assert decision.request_id == str(row.request_id)
    assert decision.decided_at is not None
