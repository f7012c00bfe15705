"""Approvals beyond yes and no, in one process: edited arguments, abort,
remember for a session or a user, rules, batches, keys and tool call ids."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from permissions import arequest_permission
from permissions.exceptions import InvalidPermissionRequest
from permissions.models import PermissionRequest, PermissionRule
from sse.subscriptions import subscribe
from tests.conftest import MakeSession, MakeUser
from tests.permissions_support import orm, published_pending
from tests.test_permissions_agent import answer, messages

pytestmark = pytest.mark.usefixtures("live_db")


async def asked(sid: str, tool: str = "write_file", **kwargs: Any) -> asyncio.Task[Any]:
    """An agent waiting for a person's answer, once its request is published."""
    before = await _published(sid)
    task = asyncio.create_task(
        arequest_permission(sid, tool, kwargs.pop("arguments", {"path": "/a"}), **kwargs)
    )
    deadline = asyncio.get_running_loop().time() + 10
    while await _published(sid) == before:
        assert asyncio.get_running_loop().time() < deadline, "the request was never published"
        await asyncio.sleep(0.02)
    return task


async def _published(sid: str) -> int:
    return await orm(
        lambda: PermissionRequest.objects.filter(session_id=sid).exclude(event_id="").count()
    )


async def test_approve_with_edited_arguments(owner: tuple[str, str]) -> None:
    sid, token = owner
    agent = await asked(sid, arguments={"path": "/etc/passwd", "mode": "w"})
    edits = {"path": "/tmp/passwd", "mode": "w"}
    status, body = await answer(token, sid, {"approved": True, "arguments": edits})
    assert status == 200, body
    assert (body["data"]["arguments"], body["data"]["edited"]) == (edits, True)
    decision = await agent
    assert (decision.approved, decision.arguments, decision.edited) == (True, edits, True)
    row = await orm(lambda: PermissionRequest.objects.get(session_id=sid))
    # The audit keeps both.
    assert (row.arguments, row.edited_arguments) == ({"path": "/etc/passwd", "mode": "w"}, edits)


async def test_an_approval_without_edits_runs_the_arguments_asked(owner: tuple[str, str]) -> None:
    sid, token = owner
    agent = await asked(sid, arguments={"path": "/a"})
    assert (await answer(token, sid, {"approved": True}))[0] == 200
    decision = await agent
    assert (decision.arguments, decision.edited, decision.abort) == ({"path": "/a"}, False, False)


async def test_deny_with_a_reason_and_abort(owner: tuple[str, str]) -> None:
    sid, token = owner
    agent = await asked(sid)
    status, body = await answer(
        token, sid, {"approved": False, "reason": "Wrong file; stop.", "abort": True}
    )
    assert status == 200, body
    decision = await agent
    assert (decision.status, decision.reason, decision.abort) == (
        "denied",
        "Wrong file; stop.",
        True,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"approved": False, "arguments": {"path": "/b"}}, "arguments"),
        ({"approved": True, "arguments": ["/b"]}, "arguments"),
        ({"approved": True, "arguments": "/b"}, "arguments"),
        ({"approved": True, "abort": True}, "abort"),
        ({"approved": False, "abort": "yes"}, "abort"),
        ({"approved": False, "remember": "user"}, "remember"),
        ({"approved": True, "remember": "forever"}, "remember"),
    ],
)
async def test_answers_that_do_not_fit_are_refused(
    owner: tuple[str, str], body: dict[str, Any], field: str
) -> None:
    sid, token = owner
    agent = await asked(sid)
    status, reply = await answer(token, sid, body)
    assert status == 400
    assert field in reply["error"]["fields"]
    (row,) = await published_pending(sid)  # still waiting
    assert row.status == "pending"
    agent.cancel()


async def test_remember_for_the_user_approves_the_tool_in_their_other_sessions(
    make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    first, second = make_session(user).session_id, make_session(user).session_id
    other_user, _ = make_user()
    stranger = make_session(other_user).session_id
    agent = await asked(first, "deploy")
    assert (await answer(token, first, {"approved": True, "remember": "user"}))[0] == 200
    assert (await agent).decided_by_rule == ""
    rule = await orm(lambda: PermissionRule.objects.get())
    assert (rule.scope, rule.user_id, rule.tool_name) == ("user", user.pk, "deploy")

    later = await asyncio.wait_for(arequest_permission(second, "deploy"), 5)
    assert (later.status, later.decided_by_rule) == ("approved", f"rule:{rule.pk}")
    # Not another tool, not another user's session.
    for sid, tool in ((second, "destroy"), (stranger, "deploy")):
        other = await asyncio.wait_for(arequest_permission(sid, tool, timeout=0.3), 5)
        assert other.status == "expired"


async def test_rules_deny_beats_ask_beats_allow(owner: tuple[str, str]) -> None:
    sid, token = owner

    def make(**fields: Any) -> PermissionRule:
        return PermissionRule.objects.create(**({"scope": "global"} | fields))

    allow_all = await orm(lambda: make(tool_name="*", effect="allow"))
    ask_shell = await orm(lambda: make(tool_name="shell_*", effect="ask"))
    deny_rm = await orm(
        lambda: make(
            scope="session",
            session_id=sid,
            tool_name="shell_*",
            effect="deny",
            arguments_match={"cmd": "rm *"},
            reason="No deleting.",
        )
    )
    # allow alone
    read = await asyncio.wait_for(arequest_permission(sid, "read_file", {"path": "/a"}), 5)
    assert (read.status, read.decided_by_rule) == ("approved", f"rule:{allow_all.pk}")
    # deny over ask and allow: the rule's message reaches the agent
    rm = await asyncio.wait_for(arequest_permission(sid, "shell_run", {"cmd": "rm -rf /"}), 5)
    assert (rm.status, rm.reason, rm.decided_by_rule) == (
        "denied",
        "No deleting.",
        f"rule:{deny_rm.pk}",
    )
    # ask over allow: a person is asked
    agent = await asked(sid, "shell_run", arguments={"cmd": "ls -l"})
    assert (await answer(token, sid, {"approved": False, "reason": "no"}))[0] == 200
    assert ((await agent).status, (await agent).decided_by_rule) == ("denied", "")
    # the match needs the argument, in its string form
    numeric = await orm(
        lambda: make(tool_name="scale", effect="deny", arguments_match={"replicas": "1?"})
    )
    many = await asyncio.wait_for(arequest_permission(sid, "scale", {"replicas": 12}), 5)
    few = await asyncio.wait_for(arequest_permission(sid, "scale", {"replicas": 3}), 5)
    assert (many.decided_by_rule, few.decided_by_rule) == (
        f"rule:{numeric.pk}",
        f"rule:{allow_all.pk}",
    )
    assert ask_shell.pk  # it applied above


async def test_expired_rules_and_other_sessions_rules_do_not_apply(owner: tuple[str, str]) -> None:
    sid, _ = owner
    await orm(
        lambda: PermissionRule.objects.create(
            scope="global",
            tool_name="deploy",
            effect="allow",
            expires_at=timezone.now() - timedelta(seconds=1),
        )
    )
    await orm(
        lambda: PermissionRule.objects.create(
            scope="session", session_id=sid + "-other", tool_name="deploy", effect="allow"
        )
    )
    decision = await asyncio.wait_for(arequest_permission(sid, "deploy", timeout=0.3), 5)
    assert decision.status == "expired"


async def test_a_batch_decides_each_item_on_its_own(owner: tuple[str, str]) -> None:
    sid, token = owner
    agents = [await asked(sid, f"tool_{n}") for n in range(3)]
    rows = await published_pending(sid, 3)
    ids = [str(row.request_id) for row in rows]
    status, body = await answer(
        token,
        sid,
        {
            "decisions": [
                {"request_id": ids[0], "approved": True, "arguments": {"path": "/b"}},
                {"request_id": ids[1], "approved": False, "reason": "no", "abort": True},
                {"request_id": ids[0], "approved": False},  # already decided, above
                {"request_id": "9f0e6a5c-0000-4000-8000-000000000000", "approved": True},
                {"request_id": ids[2], "approved": "yes"},
                {"approved": True},
                "not an object",
            ]
        },
    )
    assert status == 200, body
    results = body["data"]["results"]
    assert [r["status"] for r in results] == [200, 200, 409, 404, 400, 400, 400]
    assert [r["request_id"] for r in results[:5]] == [
        ids[0], ids[1], ids[0], "9f0e6a5c-0000-4000-8000-000000000000", ids[2],
    ]  # fmt: skip
    assert results[0]["decision"]["arguments"] == {"path": "/b"}
    assert results[1]["decision"]["abort"] is True
    assert results[2]["error"]["code"] == "already_decided"
    assert results[2]["error"]["decision"]["status"] == "approved"
    assert results[3]["error"]["code"] == "request_not_found"
    assert "approved" in results[4]["error"]["fields"]
    assert "request_id" in results[5]["error"]["fields"]
    first, second = await agents[0], await agents[1]
    assert (first.status, first.arguments, second.status, second.abort) == (
        "approved",
        {"path": "/b"},
        "denied",
        True,
    )
    (left,) = await published_pending(sid)  # the bad item changed nothing
    assert str(left.request_id) == ids[2]
    agents[2].cancel()


@pytest.mark.parametrize(
    "body", [{"decisions": []}, {"decisions": [{}] * 51}, {"decisions": {"a": 1}}]
)
async def test_a_batch_has_one_to_fifty_decisions(
    owner: tuple[str, str], body: dict[str, Any]
) -> None:
    sid, token = owner
    status, reply = await answer(token, sid, body)
    assert status == 400
    assert "decisions" in reply["error"]["fields"]


async def test_asking_again_with_a_key_reattaches(owner: tuple[str, str]) -> None:
    sid, token = owner
    async with subscribe(sid) as tab:
        first = await asked(sid, key="step-7", tool_call_id="call_abc")
        (prompt,) = await messages(tab, "permission_request")
        assert prompt["data"]["tool_call_id"] == "call_abc"
        first.cancel()  # the agent stopped (it restarts)
        with pytest.raises(asyncio.CancelledError):
            await first
        again = asyncio.create_task(
            arequest_permission(sid, "write_file", {"path": "/a"}, key="step-7")
        )
        await asyncio.sleep(0.3)
        (row,) = await published_pending(sid)  # still the one request, still pending
        assert (row.key, row.tool_call_id) == ("step-7", "call_abc")
        assert (await answer(token, sid, {"approved": True}))[0] == 200
        decision = await again
        seen = await messages(tab, "permission_cleared")
    assert (decision.request_id, decision.tool_call_id) == (str(row.request_id), "call_abc")
    assert [m["type"] for m in seen] == ["permission_cleared"]  # no second prompt
    # Decided: asking again returns the decision at once.
    third = await asyncio.wait_for(arequest_permission(sid, "write_file", key="step-7"), 5)
    assert (third.request_id, third.status) == (decision.request_id, "approved")
    assert await orm(lambda: PermissionRequest.objects.filter(session_id=sid).count()) == 1


async def test_concurrent_asks_with_one_key_make_one_request(owner: tuple[str, str]) -> None:
    sid, token = owner
    agents = [
        asyncio.create_task(arequest_permission(sid, "write_file", key="k", timeout=30))
        for _ in range(5)
    ]
    await published_pending(sid)
    assert (await answer(token, sid, {"approved": True}))[0] == 200
    decisions = await asyncio.gather(*agents)
    assert len({d.request_id for d in decisions}) == 1
    assert await orm(lambda: PermissionRequest.objects.filter(session_id=sid).count()) == 1


@pytest.mark.parametrize(("name", "value"), [("key", ""), ("key", 5), ("tool_call_id", "x" * 201)])
async def test_bad_keys_and_tool_call_ids_are_refused(
    owner: tuple[str, str], name: str, value: Any
) -> None:
    sid, _ = owner
    with pytest.raises(InvalidPermissionRequest, match=name):
        await arequest_permission(sid, "write_file", **{name: value})
