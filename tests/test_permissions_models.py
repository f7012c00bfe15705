"""The audit row: one decision ever, the messages browsers get, the backlog, policies."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from permissions.backlog import pending_requests
from permissions.models import PermissionRequest, Status, iso, milliseconds
from permissions.policies import PolicyDecision, PolicyRequest, allow_read_only, evaluate

pytestmark = pytest.mark.django_db


def make_request(session_id: str = "s1", seconds: float = 60, **fields: Any) -> PermissionRequest:
    now = timezone.now()
    defaults: dict[str, Any] = {
        "session_id": session_id,
        "tool_name": "write_file",
        "arguments": {"path": "/tmp/x"},
        "requested_at": now,
        "expires_at": now + timedelta(seconds=seconds),
    }
    return PermissionRequest.objects.create(**(defaults | fields))


def test_exactly_one_decision_stands() -> None:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    request = make_request()
    stale = PermissionRequest.objects.get(pk=request.pk)  # a second worker's copy

    assert request.decide(True, reason="fine", user=alice, client_ip="10.0.0.1", user_agent="UA")
    assert not stale.decide(False, reason="no", user=bob)
    # The loser is reloaded with the decision that stands.
    assert (stale.status, stale.reason, stale.decided_by) == ("approved", "fine", alice)
    assert not stale.cancel()
    assert not stale.expire()

    row = PermissionRequest.objects.get(pk=request.pk)
    assert (row.status, row.approved, row.reason) == ("approved", True, "fine")
    assert row.decided_by == alice
    assert row.client_ip == "10.0.0.1"
    assert row.user_agent == "UA"
    assert row.decided_at is not None
    assert row.latency_ms is not None
    assert row.latency_ms == int((row.decided_at - row.requested_at).total_seconds() * 1000)


def test_an_expired_request_takes_no_decision_but_expires() -> None:
    now = timezone.now()
    request = make_request(
        requested_at=now - timedelta(seconds=61), expires_at=now - timedelta(seconds=1)
    )
    assert request.is_overdue
    assert not request.decide(True, reason="too late")
    assert request.status == Status.PENDING
    assert request.expire()
    assert request.status == "expired"
    assert request.reason == "No answer within 60 seconds."
    assert not request.expire()
    assert PermissionRequest.objects.get(pk=request.pk).status == "expired"


def test_cancel() -> None:
    request = make_request()
    assert request.cancel()
    assert (request.status, request.approved) == ("cancelled", False)
    assert request.reason == "The agent stopped waiting."
    assert not request.decide(True)
    assert request.status == "cancelled"


def test_messages() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    request = make_request(description="Write a file", expires_at=moment)
    assert request.request_message() == {
        "request_id": str(request.request_id),
        "tool_name": "write_file",
        "arguments": {"path": "/tmp/x"},
        "description": "Write a file",
        "expires_at": "2026-01-02T03:04:05.678Z",
        "expires_at_ms": 1767323045678,
    }
    assert request.cleared_message() == {
        "request_id": str(request.request_id),
        "status": "pending",
        "approved": False,
        "reason": "",
    }
    assert iso(moment.astimezone(timezone.get_fixed_timezone(120))) == "2026-01-02T03:04:05.678Z"
    assert milliseconds(moment) == 1767323045678


def test_backlog_lists_unexpired_pending_requests_oldest_first() -> None:
    now = timezone.now()
    second = make_request(requested_at=now - timedelta(seconds=1), event_id="1-0")
    first = make_request(requested_at=now - timedelta(seconds=2))
    make_request(seconds=-1)  # overdue
    make_request(status="approved")
    make_request(session_id="other")

    messages = pending_requests("s1")
    assert [m.data["request_id"] for m in messages] == [
        str(first.request_id),
        str(second.request_id),
    ]
    assert all(m.type == "permission_request" for m in messages)
    assert messages[0].event_id is None  # not published yet: shown rather than missed
    assert messages[1].event_id == "1-0"
    assert messages[1].timestamp_ms == milliseconds(second.requested_at)
    assert messages[1].data == second.request_message()
    assert pending_requests("nobody") == []


@pytest.mark.parametrize(
    ("tool_name", "approved"),
    [("read_file", True), ("get_user", True), ("list_dir", True), ("search_web", True),
     ("write_file", None), ("reader", None), ("delete_list_", None)],
)  # fmt: skip
def test_allow_read_only(tool_name: str, approved: bool | None) -> None:
    decision = allow_read_only(PolicyRequest("s1", tool_name))
    assert (decision.approved if decision else None) == approved


def broken_policy(request: PolicyRequest) -> PolicyDecision | None:
    raise RuntimeError("policy bug")


def sloppy_policy(request: PolicyRequest) -> Any:
    return True


def test_evaluate(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    request = PolicyRequest("s1", "read_file", {"path": "/etc/hosts"})
    assert evaluate(request) is None  # no POLICY: ask a person

    settings.PERMISSIONS = {"POLICY": "permissions.policies.allow_read_only"}
    assert evaluate(request) == (
        PolicyDecision(True, "Read-only tool, approved by policy."),
        "policy:permissions.policies.allow_read_only",
    )

    # A broken policy asks a person, loudly.
    caplog.set_level(logging.ERROR, logger="permissions.policies")
    for name in ("broken_policy", "sloppy_policy"):
        settings.PERMISSIONS = {"POLICY": f"tests.test_permissions_models.{name}"}
        assert evaluate(request) is None
        assert name in caplog.text
    assert "policy bug" in caplog.text


def test_str() -> None:
    request = make_request(request_id=uuid.uuid4())
    assert str(request) == "write_file in s1 (pending)"
