"""Tokens, sessions and the pluggable read rule, through a real server."""

from __future__ import annotations

import httpx
import pytest

from sse.models import StreamSession
from tests.conftest import PASSWORD, MakeSession, MakeUser
from tests.streaming import MakeStack, until_connected

API = "/agent_backend/api"


@pytest.fixture
def base_url(make_stack: MakeStack) -> str:
    return make_stack("memory").base_url


def test_token_obtain_and_refresh(base_url: str, make_user: MakeUser) -> None:
    user, _ = make_user()
    pair = httpx.post(
        f"{base_url}{API}/auth/token/", json={"username": user.username, "password": PASSWORD}
    )
    assert pair.status_code == 200
    assert set(pair.json()) == {"access", "refresh"}
    refreshed = httpx.post(
        f"{base_url}{API}/auth/token/refresh/", json={"refresh": pair.json()["refresh"]}
    )
    assert refreshed.status_code == 200
    assert "access" in refreshed.json()
    wrong = httpx.post(
        f"{base_url}{API}/auth/token/", json={"username": user.username, "password": "x"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["success"] is False
    assert wrong.json()["error"]["code"] == "no_active_account"


def test_create_a_session(base_url: str, make_user: MakeUser) -> None:
    user, token = make_user()
    other, other_token = make_user()
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{base_url}{API}/sse/sessions/"

    created = httpx.post(url, json={"session_id": "chat-1.a:b_c", "title": "Chat"}, headers=auth)
    assert created.status_code == 201
    assert created.json() == {
        "success": True,
        "data": {
            "session_id": "chat-1.a:b_c",
            "title": "Chat",
            "owner": user.username,
            "created_at": created.json()["data"]["created_at"],
        },
    }
    again = httpx.post(url, json={"session_id": "chat-1.a:b_c"}, headers=auth)
    assert again.status_code == 200  # the caller's own: returned as it is
    assert again.json()["data"]["title"] == "Chat"

    taken = httpx.post(
        url, json={"session_id": "chat-1.a:b_c"}, headers={"Authorization": f"Bearer {other_token}"}
    )
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "session_exists"

    generated = httpx.post(url, headers=auth)
    assert generated.status_code == 201
    assert len(generated.json()["data"]["session_id"]) == 32

    listed = httpx.get(url, headers=auth).json()["data"]
    assert {s["session_id"] for s in listed} == {
        "chat-1.a:b_c",
        generated.json()["data"]["session_id"],
    }
    assert StreamSession.objects.filter(owner=other).count() == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"session_id": "bad id"}, 400, "invalid"),
        # Not trimmed into another session's id.
        ({"session_id": " ws-1"}, 400, "invalid"),
        ({"session_id": "ws-1\n"}, 400, "invalid"),
        ({"session_id": "x" * 129}, 400, "max_length"),
        ({"title": "t" * 201}, 400, "max_length"),
    ],
)
def test_session_input_errors(
    base_url: str, make_user: MakeUser, body: dict[str, str], status: int, code: str
) -> None:
    _, token = make_user()
    response = httpx.post(
        f"{base_url}{API}/sse/sessions/", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert StreamSession.objects.count() == 0


def test_sessions_need_a_bearer_token(base_url: str) -> None:
    response = httpx.post(f"{base_url}{API}/sse/sessions/", json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    malformed = httpx.post(
        f"{base_url}{API}/sse/sessions/",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 401


async def test_session_access_is_pluggable(
    make_stack: MakeStack, settings: object, make_user: MakeUser, make_session: MakeSession
) -> None:
    stack = make_stack("memory", SESSION_ACCESS="tests.access.public_prefix")
    owner, _ = make_user()
    _, token = make_user()
    public = make_session(owner, "public-room").session_id
    private = make_session(owner).session_id
    async with stack.open(public, token) as stream:
        await until_connected(stream)
    async with stack.open(private, token) as refused:
        assert refused.status_code == 404


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive_everywhere(
    base_url: str, make_user: MakeUser, make_session: MakeSession, scheme: str
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    auth = {"Authorization": f"{scheme} {token}"}
    assert httpx.get(f"{base_url}{API}/sse/sessions/", headers=auth).status_code == 200
    assert httpx.get(f"{base_url}{API}/sse/health/{sid}", headers=auth).status_code == 200
    with httpx.stream("GET", f"{base_url}{API}/sse/events/{sid}", headers=auth) as stream:
        assert stream.status_code == 200
