"""POST /agent_backend/api/sse/permission-response/{session_id}: every answer and every refusal.

In-process with Django's test client and the in-process broker; the same
endpoint against real servers, Redis and agents in other processes is in
``test_permissions_live.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from permissions.models import PermissionRequest, PermissionRule, iso
from sse._stream.hub import get_hub
from sse.models import StreamSession

pytestmark = pytest.mark.django_db

Post = Callable[..., Any]


def published(session_id: str) -> list[dict[str, Any]]:
    """Every message published to the session (the in-process broker's buffer)."""
    read = async_to_sync(get_hub().broker.read)(session_id, (0, 0))
    return [json.loads(e.frame.split(b"\ndata: ", 1)[1]) for e in read.events]


def make_request(session_id: str, seconds: float = 60, **fields: Any) -> PermissionRequest:
    now = timezone.now()
    defaults: dict[str, Any] = {
        "session_id": session_id,
        "tool_name": "write_file",
        "arguments": {"path": "/tmp/x"},
        "requested_at": now,
        "expires_at": now + timedelta(seconds=seconds),
    }
    return PermissionRequest.objects.create(**(defaults | fields))


def snapshot(session_id: str) -> list[tuple[Any, ...]]:
    return list(
        PermissionRequest.objects.filter(session_id=session_id)
        .order_by("id")
        .values_list("status", "reason", "decided_at", "decided_by", "client_ip", "latency_ms")
    )


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice")


@pytest.fixture
def session(alice: User) -> str:
    return StreamSession.objects.create(session_id=f"s-{uuid.uuid4().hex}", owner=alice).session_id


@pytest.fixture
def post(client: Client, alice: User, django_capture_on_commit_callbacks: Any) -> Post:
    token = str(AccessToken.for_user(alice))

    def send(
        session_id: str,
        body: Any = None,
        *,
        raw: str | None = None,
        token: str | None = token,
        content_type: str = "application/json",
        **headers: Any,
    ) -> Any:
        if token is not None:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        data = raw if raw is not None else json.dumps(body)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                f"/agent_backend/api/sse/permission-response/{session_id}",
                data,
                content_type=content_type,
                **headers,
            )

    return send


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) >= {"code", "message"}
    assert isinstance(body["error"]["message"], str)
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


def test_approve(post: Post, session: str, alice: User) -> None:
    request = make_request(session)
    response = post(
        session,
        {"approved": True, "reason": "用户同意", "extra": "ignored"},
        HTTP_USER_AGENT="Mozilla/5.0 Test",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    row = PermissionRequest.objects.get(pk=request.pk)
    assert body == {
        "success": True,
        "data": {
            "request_id": str(request.request_id),
            "status": "approved",
            "approved": True,
            "reason": "用户同意",
            "decided_by": "alice",
            "decided_at": body["data"]["decided_at"],
            "decided_by_rule": "",
            "tool_name": "write_file",
            "tool_call_id": None,
            "arguments": request.arguments,
            "edited": False,
            "abort": False,
            "remember": "",
        },
    }
    assert row.decided_at is not None
    assert body["data"]["decided_at"] == iso(row.decided_at)
    assert (row.status, row.reason, row.decided_by, row.decided_by_rule) == (
        "approved",
        "用户同意",
        alice,
        "",
    )
    assert row.client_ip == "127.0.0.1"
    assert row.user_agent == "Mozilla/5.0 Test"
    assert row.latency_ms is not None
    assert published(session) == [
        {
            "id": published(session)[0]["id"],
            "type": "permission_cleared",
            "session_id": session,
            "data": {
                "request_id": str(request.request_id),
                "status": "approved",
                "approved": True,
                "reason": "用户同意",
            },
            "timestamp": published(session)[0]["timestamp"],
        }
    ]
    assert not PermissionRule.objects.exists()


def test_deny_with_the_longest_reason_and_no_reason(post: Post, session: str) -> None:
    first = make_request(session)
    second = make_request(session)
    assert post(session, {"approved": False, "reason": "x" * 1000}).status_code == 200
    assert post(session, {"approved": False}).status_code == 200
    assert post(session, {"approved": False, "reason": None}).status_code == 409
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.reason) == ("denied", "x" * 1000)
    assert (second.status, second.reason) == ("denied", "")


def test_without_request_id_the_oldest_pending_unexpired_request_is_answered(
    post: Post, session: str
) -> None:
    now = timezone.now()
    newest = make_request(session, requested_at=now)
    oldest = make_request(session, requested_at=now - timedelta(seconds=5))
    make_request(session, requested_at=now - timedelta(seconds=9), status="denied")
    response = post(session, {"approved": True})
    assert response.json()["data"]["request_id"] == str(oldest.request_id)
    response = post(session, {"approved": False})
    assert response.json()["data"]["request_id"] == str(newest.request_id)
    assert_error(post(session, {"approved": True}), 409, "no_pending_request")


def test_request_id_answers_that_request(post: Post, session: str) -> None:
    make_request(session)
    named = make_request(session, tool_name="delete_file")
    response = post(session, {"approved": False, "request_id": str(named.request_id).upper()})
    assert response.status_code == 200
    assert response.json()["data"]["tool_name"] == "delete_file"
    assert PermissionRequest.objects.get(pk=named.pk).status == "denied"


def test_already_decided_carries_the_decision_that_stands(
    post: Post, session: str, alice: User
) -> None:
    request = make_request(session)
    assert post(session, {"approved": True, "reason": "first"}).status_code == 200
    before = snapshot(session)
    events = len(published(session))
    second = {"approved": False, "reason": "second", "request_id": str(request.request_id)}
    error = assert_error(post(session, second), 409, "already_decided")
    assert error["decision"]["status"] == "approved"
    assert error["decision"]["reason"] == "first"
    assert error["decision"]["decided_by"] == "alice"
    assert error["decision"]["request_id"] == str(request.request_id)
    assert snapshot(session) == before
    assert len(published(session)) == events


def test_a_cancelled_request_is_already_decided(post: Post, session: str) -> None:
    request = make_request(session)
    request.cancel()
    error = assert_error(
        post(session, {"approved": True, "request_id": str(request.request_id)}),
        409,
        "already_decided",
    )
    assert error["decision"]["status"] == "cancelled"


def test_expired(post: Post, session: str) -> None:
    request = make_request(session, seconds=-0.001)
    error = assert_error(post(session, {"approved": True}), 410, "expired")
    assert error["decision"]["status"] == "expired"
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("expired", None)
    (cleared,) = published(session)
    assert cleared["type"] == "permission_cleared"
    assert cleared["data"] == {
        "request_id": str(request.request_id),
        "status": "expired",
        "approved": False,
        "reason": request.reason,
    }
    # Again, by id: still 410, nothing more published.
    assert_error(post(session, {"approved": True, "request_id": str(request.request_id)}), 410)
    assert len(published(session)) == 1


def test_remember_creates_a_session_rule(post: Post, session: str, alice: User) -> None:
    request = make_request(session)
    assert post(session, {"approved": True, "remember": "session"}).status_code == 200
    rule = PermissionRule.objects.get()
    assert (rule.session_id, rule.tool_name, rule.created_by, rule.request) == (
        session,
        "write_file",
        alice,
        request,
    )
    # Remembering again is harmless.
    make_request(session)
    assert post(session, {"approved": True, "remember": "session"}).status_code == 200
    assert PermissionRule.objects.count() == 1


def test_staff_may_answer_any_session(
    client: Client, session: str, django_capture_on_commit_callbacks: Any
) -> None:
    make_request(session)
    staff = User.objects.create_user("root", is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/agent_backend/api/sse/permission-response/{session}",
            {"approved": True},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(staff)}",
        )
    assert response.json()["data"]["decided_by"] == "root"


@pytest.mark.parametrize(
    ("num_proxies", "forwarded", "expected"),
    [(0, "203.0.113.9", "127.0.0.1"), (1, "198.51.100.1, 203.0.113.9", "203.0.113.9"),
     (2, "198.51.100.1, 203.0.113.9", "198.51.100.1"), (5, "203.0.113.9", "203.0.113.9"),
     (1, "not-an-ip", None), (1, "2001:db8::1", "2001:db8::1")],
)  # fmt: skip
def test_client_ip(
    post: Post, session: str, settings: Any, num_proxies: int, forwarded: str, expected: str | None
) -> None:
    settings.PERMISSIONS = {"NUM_PROXIES": num_proxies}
    request = make_request(session)
    assert post(session, {"approved": True}, HTTP_X_FORWARDED_FOR=forwarded).status_code == 200
    assert PermissionRequest.objects.get(pk=request.pk).client_ip == expected


BAD_BODIES: list[tuple[str, str, str | None]] = [
    ("{not json", "parse_error", None),
    ('{"approved": true,}', "parse_error", None),
    ("[true]", "invalid", None),
    ('"approved"', "invalid", None),
    ("42", "invalid", None),
    ("null", "invalid", None),
    ("{}", "required", "approved"),
    ('{"reason": "ok"}', "required", "approved"),
    ('{"approved": "yes"}', "invalid", "approved"),
    ('{"approved": "true"}', "invalid", "approved"),
    ('{"approved": 1}', "invalid", "approved"),
    ('{"approved": 0}', "invalid", "approved"),
    ('{"approved": null}', "null", "approved"),
    ('{"approved": [true]}', "invalid", "approved"),
    ('{"approved": true, "reason": 5}', "invalid", "reason"),
    ('{"approved": true, "reason": ["no"]}', "invalid", "reason"),
    ('{"approved": true, "reason": {"a": 1}}', "invalid", "reason"),
    ('{"approved": true, "reason": "' + "x" * 1001 + '"}', "max_length", "reason"),
    ('{"approved": true, "request_id": "nope"}', "invalid", "request_id"),
    ('{"approved": true, "request_id": 12345}', "invalid", "request_id"),
    ('{"approved": true, "remember": "forever"}', "invalid_choice", "remember"),
    ('{"approved": false, "remember": "session"}', "invalid", "remember"),
]


@pytest.mark.parametrize(("raw", "code", "field"), BAD_BODIES)
def test_bad_bodies_are_refused_and_change_nothing(
    post: Post, session: str, raw: str, code: str, field: str | None
) -> None:
    make_request(session)
    before = snapshot(session)
    error = assert_error(post(session, raw=raw), 400, code)
    if field is not None:
        assert error["message"].startswith(f"{field}: ")
        assert field in error["fields"]
    assert snapshot(session) == before
    assert published(session) == []
    assert not PermissionRule.objects.exists()


def test_other_refusals_change_nothing(post: Post, session: str, alice: User) -> None:
    request = make_request(session)
    bob = User.objects.create_user("bob")
    bobs = StreamSession.objects.create(session_id=f"b-{uuid.uuid4().hex}", owner=bob).session_id
    make_request(bobs)
    before = snapshot(session), snapshot(bobs)
    good = {"approved": True}

    assert_error(post(session, good, token=None), 401)
    assert_error(post(session, good, token="not-a-token"), 401)
    assert_error(post("bad*id", good), 400, "invalid_session_id")
    assert_error(post("no-such-session", good), 404, "session_not_found")
    # Another user's session is "not found", whatever the body.
    assert_error(post(bobs, good), 404, "session_not_found")
    assert_error(post(bobs, raw="{not json"), 404, "session_not_found")
    assert_error(post(session, raw="approved=true", content_type="text/plain"), 415)
    assert_error(post(session, {**good, "request_id": str(uuid.uuid4())}), 404, "request_not_found")
    # A request of another session cannot be answered through this one.
    bobs_request = PermissionRequest.objects.get(session_id=bobs)
    assert_error(post(session, {**good, "request_id": str(bobs_request.request_id)}), 404)

    assert (snapshot(session), snapshot(bobs)) == before
    assert published(session) == published(bobs) == []
    assert PermissionRequest.objects.get(pk=request.pk).status == "pending"


def test_only_post(client: Client, session: str, alice: User) -> None:
    response = client.get(
        f"/agent_backend/api/sse/permission-response/{session}",
        HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(alice)}",
    )
    assert_error(response, 405)
