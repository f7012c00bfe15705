"""The agent side in one process (the embedded broker): ask, wait, and every way a wait ends.

The same across processes, with Redis and real servers, is in ``test_permissions_live.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, TypeVar

import pytest
from django.db import connections
from django.test import Client

from permissions import Decision, arequest_permission, request_permission
from permissions.exceptions import InvalidPermissionRequest
from permissions.models import PermissionRequest, PermissionRule
from permissions.policies import PolicyDecision, PolicyRequest
from sse.exceptions import EventTooLarge, InvalidSessionId
from sse.subscriptions import Subscription, subscribe
from tests.conftest import MakeSession
from tests.permissions_support import orm, published_pending

T = TypeVar("T")

pytestmark = pytest.mark.usefixtures("live_db")


async def answer(token: str, session_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    def post() -> tuple[int, Any]:
        try:
            response = Client().post(
                f"/agent_backend/api/sse/permission-response/{session_id}",
                json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )
        finally:
            connections.close_all()
        return response.status_code, response.json()

    return await asyncio.to_thread(post)


async def messages(tab: Subscription, *types: str, timeout: float = 5) -> list[dict[str, Any]]:
    """What the tab receives until one message of each of ``types`` has arrived."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not set(types) <= {m["type"] for m in seen}:
        assert time.monotonic() < deadline, f"expected {types}, got {seen}"
        seen += await tab.get(deadline - time.monotonic())
    return seen


async def test_round_trip(owner: tuple[str, str]) -> None:
    sid, token = owner
    async with subscribe(sid) as tab:
        agent = asyncio.create_task(
            arequest_permission(
                sid, "write_file", {"path": "/tmp/报告.txt"}, timeout=30, description="Save it"
            )
        )
        (asked,) = await messages(tab, "permission_request")
        (row,) = await published_pending(sid)
        assert asked["id"] == row.event_id
        assert asked["data"] == row.request_message()
        assert asked["data"]["arguments"] == {"path": "/tmp/报告.txt"}
        assert asked["data"]["description"] == "Save it"
        assert 29_000 < asked["data"]["expires_at_ms"] - asked["timestamp"] <= 30_000

        status, body = await answer(token, sid, {"approved": True, "reason": "用户同意"})
        assert status == 200, body
        decision = await asyncio.wait_for(agent, 5)
        (cleared,) = await messages(tab, "permission_cleared")

    assert isinstance(decision, Decision)
    assert (decision.status, decision.approved, decision.reason) == ("approved", True, "用户同意")
    assert decision.request_id == str(row.request_id) == body["data"]["request_id"]
    assert decision.decided_by == body["data"]["decided_by"]
    assert decision.decided_at is not None
    assert decision.decided_by_rule == ""
    assert cleared["data"] == {
        "request_id": decision.request_id,
        "status": "approved",
        "approved": True,
        "reason": "用户同意",
    }
    assert decision.as_dict()["decided_at"] == body["data"]["decided_at"]
    json.dumps(decision.as_dict())


async def test_several_pending_requests_at_once(owner: tuple[str, str]) -> None:
    sid, token = owner
    agents = [
        asyncio.create_task(arequest_permission(sid, f"tool_{i}", {"i": i}, timeout=30))
        for i in range(3)
    ]
    rows = await published_pending(sid, 3)
    for row in reversed(rows):
        approved = row.arguments["i"] != 1
        body = {"approved": approved, "reason": row.tool_name, "request_id": str(row.request_id)}
        assert (await answer(token, sid, body))[0] == 200
    decisions = await asyncio.wait_for(asyncio.gather(*agents), 5)
    assert [(d.approved, d.reason) for d in decisions] == [
        (True, "tool_0"),
        (False, "tool_1"),
        (True, "tool_2"),
    ]


async def test_timeout_expires_the_request(owner: tuple[str, str]) -> None:
    sid, token = owner
    async with subscribe(sid) as tab:
        started = time.monotonic()
        decision = await arequest_permission(sid, "write_file", timeout=0.5)
        assert 0.45 < time.monotonic() - started < 3
        seen = await messages(tab, "permission_request", "permission_cleared")
    assert (decision.status, decision.approved, decision.decided_by) == ("expired", False, None)
    assert decision.reason == "No answer within 0.5 seconds."
    assert [m["type"] for m in seen] == ["permission_request", "permission_cleared"]
    assert seen[1]["data"]["status"] == "expired"
    row = await orm(lambda: PermissionRequest.objects.get(session_id=sid))
    assert row.status == "expired"
    status, body = await answer(token, sid, {"approved": True, "request_id": decision.request_id})
    assert (status, body["error"]["code"]) == (410, "expired")


async def test_default_timeout_comes_from_settings(owner: tuple[str, str], settings: Any) -> None:
    settings.PERMISSIONS = {"TIMEOUT": 0.2}
    decision = await arequest_permission(owner[0], "write_file")
    assert decision.status == "expired"
    assert decision.reason == "No answer within 0.2 seconds."


async def test_cancelling_the_agent_cancels_the_request(owner: tuple[str, str]) -> None:
    sid, token = owner
    async with subscribe(sid) as tab:
        agent = asyncio.create_task(arequest_permission(sid, "write_file", timeout=30))
        (row,) = await published_pending(sid)
        agent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await agent
        seen = await messages(tab, "permission_cleared")
    assert seen[-1]["data"] == {
        "request_id": str(row.request_id),
        "status": "cancelled",
        "approved": False,
        "reason": "The agent stopped waiting.",
    }
    row = await orm(lambda: PermissionRequest.objects.get(pk=row.pk))
    assert row.status == "cancelled"
    status, body = await answer(token, sid, {"approved": True})
    assert (status, body["error"]["code"]) == (409, "no_pending_request")


@pytest.mark.parametrize("delay", [0, 0.001, 0.005, 0.02, 0.05])
async def test_cancelled_at_any_moment_nothing_stays_pending(
    owner: tuple[str, str], delay: float
) -> None:
    sid, _ = owner
    agent = asyncio.create_task(arequest_permission(sid, "write_file", timeout=30))
    await asyncio.sleep(delay)
    agent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await agent
    statuses = await orm(
        lambda: list(PermissionRequest.objects.filter(session_id=sid).values_list("status"))
    )
    assert statuses in ([], [("cancelled",)])


async def test_policy_decides_before_anyone_is_asked(owner: tuple[str, str], settings: Any) -> None:
    sid, _ = owner
    settings.PERMISSIONS = {"POLICY": "permissions.policies.allow_read_only"}
    async with subscribe(sid) as tab:
        decision = await asyncio.wait_for(arequest_permission(sid, "read_file", {"p": 1}), 5)
        (cleared,) = await messages(tab, "permission_cleared")
        asking = asyncio.create_task(arequest_permission(sid, "write_file", timeout=30))
        await messages(tab, "permission_request")  # not read-only: a person is asked
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
    rule = "policy:permissions.policies.allow_read_only"
    assert (decision.status, decision.decided_by_rule, decision.decided_by) == (
        "approved",
        rule,
        None,
    )
    assert decision.reason == "Read-only tool, approved by policy."
    assert cleared["data"]["request_id"] == decision.request_id
    row = await orm(lambda: PermissionRequest.objects.get(request_id=decision.request_id))
    assert (row.status, row.decided_by_rule, row.latency_ms, row.event_id) == (
        "approved",
        rule,
        0,
        "",
    )
    assert row.decided_at == row.requested_at
    assert row.arguments == {"p": 1}


seen_by_policy: list[PolicyRequest] = []


def no_shell(request: PolicyRequest) -> PolicyDecision | None:
    seen_by_policy.append(request)
    if request.tool_name == "shell":
        return PolicyDecision(False, f"No shell for {request.user.get_username()}.")
    return None


async def test_policy_may_deny(owner: tuple[str, str], settings: Any) -> None:
    sid, _ = owner
    settings.PERMISSIONS = {"POLICY": f"{__name__}.no_shell"}
    decision = await asyncio.wait_for(
        arequest_permission(sid, "shell", {"cmd": "rm -rf /"}, description="d"), 5
    )
    owner_name = await orm(lambda: PermissionRequest.objects.select_related("owner").get().owner)
    assert owner_name is not None
    assert (decision.status, decision.approved) == ("denied", False)
    assert decision.reason == f"No shell for {owner_name.get_username()}."
    assert decision.decided_by_rule == f"policy:{__name__}.no_shell"
    request = seen_by_policy[-1]
    assert (request.session_id, request.tool_name, request.arguments, request.description) == (
        sid,
        "shell",
        {"cmd": "rm -rf /"},
        "d",
    )


async def test_remember_approves_later_requests_for_the_tool_in_the_session(
    owner: tuple[str, str], make_session: MakeSession
) -> None:
    sid, token = owner
    first = asyncio.create_task(arequest_permission(sid, "write_file", timeout=30))
    await published_pending(sid)
    status, _ = await answer(token, sid, {"approved": True, "remember": "session"})
    assert status == 200
    assert (await first).decided_by_rule == ""

    async with subscribe(sid) as tab:
        again = await asyncio.wait_for(arequest_permission(sid, "write_file", {"n": 2}), 5)
        seen = await messages(tab, "permission_cleared")
    rule = await orm(lambda: PermissionRule.objects.select_related("created_by").get())
    assert (again.status, again.decided_by_rule) == ("approved", f"rule:{rule.pk}")
    assert again.reason == f"Remembered: approved by {rule.created_by.get_username()}."
    assert [m["type"] for m in seen] == ["permission_cleared"]  # nobody was asked

    # Only that tool, only that session.
    other_tool = asyncio.create_task(arequest_permission(sid, "delete_file", timeout=0.3))
    user = await orm(lambda: PermissionRule.objects.select_related("created_by").get().created_by)
    assert user is not None
    other_session = make_session(user).session_id
    elsewhere = await arequest_permission(other_session, "write_file", timeout=0.3)
    assert (await other_tool).status == elsewhere.status == "expired"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("", {}), {}), ((5, {}), {}), (("x" * 201, {}), {}), (("t", [1]), {}),
     (("t", {"x": object()}), {}), (("t", {"x": float("nan")}), {}),
     (("t", {}), {"timeout": 0}), (("t", {}), {"timeout": -1}), (("t", {}), {"timeout": True}),
     (("t", {}), {"timeout": "5"}), (("t", {}), {"timeout": float("inf")}),
     (("t", {}), {"description": 5})],
)  # fmt: skip
async def test_bad_requests_raise_and_create_nothing(
    owner: tuple[str, str], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidPermissionRequest):
        await arequest_permission(owner[0], *args, **kwargs)
    assert not await orm(lambda: PermissionRequest.objects.exists())


async def test_bad_session_id() -> None:
    with pytest.raises(InvalidSessionId):
        await arequest_permission("bad session", "write_file")
    assert not await orm(lambda: PermissionRequest.objects.exists())


async def test_a_request_that_cannot_be_published_is_cancelled(
    owner: tuple[str, str], settings: Any
) -> None:
    settings.SSE = {"MAX_EVENT_BYTES": 1000}
    with pytest.raises(EventTooLarge):
        await arequest_permission(owner[0], "write_file", {"text": "x" * 2000})
    row = await orm(lambda: PermissionRequest.objects.get())
    assert row.status == "cancelled"
    assert row.reason.startswith("The request failed: EventTooLarge: event is ")


async def test_sync_twin(owner: tuple[str, str]) -> None:
    sid, token = owner
    agent = asyncio.create_task(
        asyncio.to_thread(request_permission, sid, "write_file", {"a": 1}, timeout=30)
    )
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": False, "reason": "no"}))[0] == 200
    decision = await asyncio.wait_for(agent, 5)
    assert (decision.status, decision.approved, decision.reason) == ("denied", False, "no")
    # It blocks, so it refuses to run on an event loop.
    with pytest.raises(RuntimeError, match="await its async twin"):
        request_permission(sid, "write_file")
