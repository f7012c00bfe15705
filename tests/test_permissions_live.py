"""Permission requests end to end: real servers, a real Redis, and the agent in a process
of its own (``manage.py request_permission``), so the answer always arrives elsewhere."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from permissions.models import PermissionRequest, PermissionRule
from sse.testing import EventStream, SSEEvent, open_stream
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.permissions_support import orm, published_pending
from tests.servers import ROOT, ASGIServer, RedisServer, database_url
from tests.streaming import health_data

T = TypeVar("T")

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("live_db")]

StartAgent = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start_agent(redis_server: RedisServer) -> Iterator[StartAgent]:
    """Run ``manage.py request_permission`` against the test database and Redis."""
    from django.db import connection

    started: list[subprocess.Popen[str]] = []
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SSE_OVERRIDES"}
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": redis_server.url,
        "PYTHONUNBUFFERED": "1",
    }

    def start(
        session_id: str,
        tool_name: str = "write_file",
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float = 60,
        description: str = "",
        sse: dict[str, Any] | None = None,
        redis_url: str | None = None,
    ) -> subprocess.Popen[str]:
        argv = [
            sys.executable,
            "manage.py",
            "request_permission",
            session_id,
            tool_name,
            json.dumps(arguments or {}),
            "--timeout",
            str(timeout),
        ]
        if description:
            argv += ["--description", description]
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env
            | {"SSE_OVERRIDES": json.dumps(sse or {}), "REDIS_URL": redis_url or redis_server.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C as at a terminal, even when the suite itself runs as a
            # background job (whose children inherit SIGINT ignored).
            preexec_fn=_interruptible,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def decision_of(agent: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    out, err = await asyncio.to_thread(agent.communicate, timeout=timeout)
    assert agent.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def tab(server: ASGIServer, session_id: str, token: str, **headers: str) -> Any:
    url = f"{server.base_url}/agent_backend/api/sse/events/{session_id}?token={token}"
    return open_stream(url, headers=headers)


async def receive(stream: EventStream, *types: str, timeout: float = 30) -> list[SSEEvent]:
    """Events until one of each of ``types`` arrived (heartbeats left out)."""
    seen: list[SSEEvent] = []
    deadline = time.monotonic() + timeout
    while not set(types) <= {event.json()["type"] for event in seen}:
        event = await stream.next_event(max(0.0, deadline - time.monotonic()))
        if event.json()["type"] != "heartbeat":
            seen.append(event)
    return seen


async def nothing_more(stream: EventStream, wait: float = 0.5) -> list[str]:
    """Types of what else arrives within ``wait`` seconds."""
    types: list[str] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            types.append((await stream.next_event(left)).json()["type"])
        except TimeoutError:
            break
    return [t for t in types if t != "heartbeat"]


async def answer(
    server: ASGIServer, session_id: str, token: str, body: Any, **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        return await client.post(
            f"{server.base_url}/agent_backend/api/sse/permission-response/{session_id}",
            content=body if isinstance(body, str) else json.dumps(body),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                **headers,
            },
        )


def pending_count(server: ASGIServer, session_id: str, token: str) -> int:
    return int(health_data(server.base_url, session_id, token)["pending_permissions"])


@pytest.mark.postgres
async def test_round_trip(
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    start_agent: StartAgent,
) -> None:
    server = server_factory("redis")
    user, token = make_user()
    sid = make_session(user).session_id
    async with tab(server, sid, token) as first, tab(server, sid, token) as second:
        await receive(first, "connected")
        await receive(second, "connected")
        agent = start_agent(
            sid, "write_file", {"path": "/srv/报告.txt"}, timeout=60, description="Write the report"
        )
        asked = [(await receive(t, "permission_request"))[-1] for t in (first, second)]
        assert asked[0].data == asked[1].data
        assert asked[0].id is not None
        message = asked[0].json()
        (row,) = await published_pending(sid)
        assert message["id"] == asked[0].id == row.event_id
        data = message["data"]
        assert data == {
            "request_id": str(row.request_id),
            "tool_name": "write_file",
            "arguments": {"path": "/srv/报告.txt"},
            "description": "Write the report",
            "expires_at": data["expires_at"],
            "expires_at_ms": data["expires_at_ms"],
        }
        assert isinstance(data["expires_at"], str)
        assert data["expires_at"].endswith("Z")
        assert 59_000 < data["expires_at_ms"] - message["timestamp"] <= 60_000
        assert await asyncio.to_thread(pending_count, server, sid, token) == 1

        response = await answer(
            server, sid, token, {"approved": True, "reason": "用户同意"}, **{"User-Agent": "tab/1"}
        )
        assert response.status_code == 200, response.text
        decision = await decision_of(agent)
        cleared = [(await receive(t, "permission_cleared"))[-1].json() for t in (first, second)]

    result = response.json()["data"]
    assert decision == {
        "request_id": str(row.request_id),
        "status": "approved",
        "approved": True,
        "reason": "用户同意",
        "decided_by": user.username,
        "decided_at": result["decided_at"],
        "decided_by_rule": "",
        "arguments": {"path": "/srv/报告.txt"},
        "edited": False,
        "abort": False,
        "tool_call_id": None,
    }
    assert result["decided_by"] == user.username
    for message in cleared:
        assert message["data"] == {
            "request_id": str(row.request_id),
            "status": "approved",
            "approved": True,
            "reason": "用户同意",
        }
    row = await orm(lambda: PermissionRequest.objects.get(pk=row.pk))
    assert (row.client_ip, row.user_agent, row.owner_id) == ("127.0.0.1", "tab/1", user.pk)
    assert row.announced
    assert await asyncio.to_thread(pending_count, server, sid, token) == 0


@pytest.mark.postgres
async def test_twenty_concurrent_answers_from_two_servers_one_decision(
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    start_agent: StartAgent,
) -> None:
    servers = [server_factory("redis", name="a"), server_factory("redis", name="b")]
    user, token = make_user()
    sid = make_session(user).session_id
    async with tab(servers[1], sid, token) as watcher:
        await receive(watcher, "connected")
        agent = start_agent(sid, timeout=60)
        await receive(watcher, "permission_request")
        (row,) = await published_pending(sid)

        def body(i: int) -> dict[str, Any]:
            answer = {"approved": i % 2 == 0, "reason": f"answer {i}"}
            return answer | ({"request_id": str(row.request_id)} if i % 3 else {})

        responses = await asyncio.gather(
            *(answer(servers[i % 2], sid, token, body(i)) for i in range(20))
        )
        decision = await decision_of(agent)
        await receive(watcher, "permission_cleared")
        assert await nothing_more(watcher) == []  # one decision, announced once

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 19, [r.text for r in responses]
    (won,) = [r.json()["data"] for r in responses if r.status_code == 200]
    for i, response in enumerate(responses):
        if response.status_code == 409:
            lost = response.json()["error"]
            if "request_id" in body(i) or lost["code"] == "already_decided":
                assert lost["code"] == "already_decided"
                assert lost["decision"] == won
            else:  # no request named, and the decision came first: nothing pending
                assert lost["code"] == "no_pending_request"
    # The agent's decision is the one answered (less what only the answer says).
    shared = set(won) - {"tool_name", "remember"}
    assert {k: decision[k] for k in shared} == {k: won[k] for k in shared}
    rows = await orm(lambda: list(PermissionRequest.objects.filter(session_id=sid)))
    assert len(rows) == 1
    assert (rows[0].status, rows[0].reason) == (won["status"], won["reason"])


async def test_a_decision_made_while_redis_is_down_reaches_the_open_tabs(
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    start_agent: StartAgent,
    redis_server: RedisServer,
) -> None:
    server = server_factory("redis", {"HEARTBEAT_INTERVAL": 1}, name="announce")
    user, token = make_user()
    sid = make_session(user).session_id
    async with tab(server, sid, token) as watcher:
        await receive(watcher, "connected")
        agent = start_agent(sid, timeout=60)
        await receive(watcher, "permission_request")
        (row,) = await published_pending(sid)
        redis_server.stop()
        try:
            response = await answer(server, sid, token, {"approved": True, "reason": "ok"})
            assert response.status_code == 200, response.text
            # The agent reads the decision from the database meanwhile.
            assert (await decision_of(agent))["status"] == "approved"
            assert not (await orm(lambda: PermissionRequest.objects.get(pk=row.pk))).announced
        finally:
            redis_server.start()
        # The same stream, never reconnected: the tab learns it all the same.
        seen = await receive(watcher, "permission_cleared", timeout=20)
        assert "connected" not in [event.json()["type"] for event in seen]
        assert seen[-1].json()["data"]["request_id"] == str(row.request_id)
        assert await nothing_more(watcher, wait=3) == []  # announced once
    assert (await orm(lambda: PermissionRequest.objects.get(pk=row.pk))).announced


@pytest.mark.postgres
async def test_no_answer_expires(
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    start_agent: StartAgent,
) -> None:
    server = server_factory("redis")
    user, token = make_user()
    sid = make_session(user).session_id
    async with tab(server, sid, token) as stream:
        await receive(stream, "connected")
        agent = start_agent(sid, timeout=1.5)
        asked = (await receive(stream, "permission_request"))[-1].json()["data"]
        cleared = (await receive(stream, "permission_cleared"))[-1].json()["data"]
        decision = await decision_of(agent)
    assert cleared == {
        "request_id": asked["request_id"],
        "status": "expired",
        "approved": False,
        "reason": "No answer within 1.5 seconds.",
    }
    assert (decision["status"], decision["approved"]) == ("expired", False)
    late = await answer(server, sid, token, {"approved": True, "request_id": asked["request_id"]})
    assert late.status_code == 410
    assert late.json()["error"]["code"] == "expired"
    assert late.json()["error"]["decision"]["status"] == "expired"
    late = await answer(server, sid, token, {"approved": True})
    assert (late.status_code, late.json()["error"]["code"]) == (409, "no_pending_request")


@pytest.mark.postgres
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_agent_stopped_cancels(
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    start_agent: StartAgent,
    sig: signal.Signals,
) -> None:
    server = server_factory("redis")
    user, token = make_user()
    sid = make_session(user).session_id
    async with tab(server, sid, token) as stream:
        await receive(stream, "connected")
        agent = start_agent(sid, timeout=60)
        asked = (await receive(stream, "permission_request"))[-1].json()["data"]
        agent.send_signal(sig)
        try:
            cleared = (await receive(stream, "permission_cleared"))[-1].json()["data"]
        except TimeoutError as exc:
            agent.kill()
            _, printed = await asyncio.to_thread(agent.communicate, timeout=30)
            raise AssertionError(f"no permission_cleared; the agent printed:\n{printed}") from exc
        await asyncio.to_thread(agent.communicate, timeout=30)
    assert agent.returncode != 0
    assert cleared == {
        "request_id": asked["request_id"],
        "status": "cancelled",
        "approved": False,
        "reason": "The agent stopped waiting.",
    }
    row = await orm(lambda: PermissionRequest.objects.get(session_id=sid))
    assert row.status == "cancelled"
    late = await answer(server, sid, token, {"approved": True, "request_id": asked["request_id"]})
    assert late.status_code == 409
    assert late.json()["error"]["decision"]["status"] == "cancelled"


async def test_a_request_nobody_saw_is_shown_on_connect_even_out_of_the_buffer(
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    start_agent: StartAgent,
    redis_server: RedisServer,
    settings: Any,
) -> None:
    small = {"BUFFER_SIZE": 3}
    server = server_factory("redis", sse=small)
    settings.SSE = {"REDIS_URL": redis_server.url, **small}  # how this process publishes
    from sse import notifier

    user, token = make_user()
    sid = make_session(user).session_id
    before = notifier.send(sid, "tool_status", {"step": 0})
    resume = {"Last-Event-ID": before}
    agent = start_agent(sid, timeout=60, sse=small)
    (row,) = await published_pending(sid)

    def permission_requests(events: list[SSEEvent]) -> list[SSEEvent]:
        return [e for e in events if e.json()["type"] == "permission_request"]

    # Still in the buffer: a fresh connection gets it from the backlog, a
    # resuming one from the replay, each exactly once.
    async with tab(server, sid, token) as fresh, tab(server, sid, token, **resume) as resumed:
        (shown,) = permission_requests(await receive(fresh, "connected", "permission_request"))
        assert shown.id is None  # not a buffered event: it must not move the resume position
        assert shown.json()["id"] == row.event_id
        assert shown.json()["data"] == row.request_message()
        assert shown.json()["timestamp"] == int(row.requested_at.timestamp() * 1000)
        (replayed,) = permission_requests(await receive(resumed, "permission_request"))
        assert replayed.id == row.event_id
        assert "permission_request" not in await nothing_more(fresh) + await nothing_more(resumed)

    # Pushed out of the 3-event buffer by later events.
    for step in range(1, 6):
        notifier.send(sid, "tool_status", {"step": step})
    async with tab(server, sid, token) as fresh, tab(server, sid, token, **resume) as resumed:
        (shown,) = permission_requests(await receive(fresh, "connected", "permission_request"))
        assert shown.json()["data"]["request_id"] == str(row.request_id)
        events = await receive(resumed, "replay_gap", "tool_status", "permission_request")
        assert [e.json()["type"] for e in events] == [
            "connected",
            "replay_gap",
            "tool_status",
            "tool_status",
            "tool_status",
            "permission_request",
        ]
        assert [e.json()["data"].get("step") for e in events[2:5]] == [3, 4, 5]
        assert len(permission_requests(events)) == 1
        assert "permission_request" not in await nothing_more(fresh) + await nothing_more(resumed)
    assert await asyncio.to_thread(pending_count, server, sid, token) == 1

    response = await answer(server, sid, token, {"approved": False, "reason": "no"})
    assert response.status_code == 200
    assert (await decision_of(agent))["status"] == "denied"
    async with tab(server, sid, token) as fresh:
        await receive(fresh, "connected")
        assert await nothing_more(fresh) == []  # decided: no longer shown


async def test_remember_across_processes(
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    start_agent: StartAgent,
) -> None:
    server = server_factory("redis")
    user, token = make_user()
    sid = make_session(user).session_id
    async with tab(server, sid, token) as stream:
        await receive(stream, "connected")
        first = start_agent(sid, "run_tests", {"suite": "unit"})
        await receive(stream, "permission_request")
        response = await answer(server, sid, token, {"approved": True, "remember": "session"})
        assert response.status_code == 200, response.text
        assert (await decision_of(first))["decided_by_rule"] == ""
        await receive(stream, "permission_cleared")

        second = await decision_of(start_agent(sid, "run_tests", {"suite": "all"}))
        events = await receive(stream, "permission_cleared")
    rule = await orm(lambda: PermissionRule.objects.get())
    assert (second["status"], second["decided_by_rule"], second["decided_by"]) == (
        "approved",
        f"rule:{rule.pk}",
        None,
    )
    # Nobody was asked; the timeline still shows the approval.
    assert [e.json()["type"] for e in events] == ["permission_cleared"]
    assert events[0].json()["data"]["request_id"] == second["request_id"]


async def test_refusals_through_a_real_server(
    server_factory: ServerFactory, make_user: MakeUser, make_session: MakeSession
) -> None:
    server = server_factory("redis")
    user, token = make_user()
    _, other_token = make_user()
    sid = make_session(user).session_id
    cases = [
        ("{not json", 400, "parse_error"),
        ('{"approved": "yes"}', 400, "invalid"),
        ('{"approved": 1}', 400, "invalid"),
        (json.dumps({"approved": True, "reason": "x" * 1001}), 400, "max_length"),
        ('{"approved": true}', 409, "no_pending_request"),
    ]
    for body, status, code in cases:
        response = await answer(server, sid, token, body)
        assert response.status_code == status, response.text
        assert response.json() == {
            "success": False,
            "error": response.json()["error"] | {"code": code},
        }
        assert isinstance(response.json()["error"]["message"], str)
    response = await answer(server, sid, other_token, '{"approved": true}')
    assert (response.status_code, response.json()["error"]["code"]) == (404, "session_not_found")
    response = await answer(server, sid, "bad-token", '{"approved": true}')
    assert response.status_code == 401
    assert not await orm(lambda: PermissionRequest.objects.filter(session_id=sid).exists())
