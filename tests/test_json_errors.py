"""Whatever the input, the apps' URLs answer in their JSON error shape, with
the right status: never Django's HTML pages, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import MakeSession, MakeUser
from tests.streaming import MakeStack

API = "/agent_backend/api"


@pytest.fixture
def base_url(make_stack: MakeStack) -> str:
    return make_stack("memory").base_url


def _assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json", response.text[:500]
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == code


WRITES = ["sse/sessions/", "sse/permission-response/{sid}", "sse/tickets/"]
TOO_DEEP = "[" * 5000 + "]" * 5000
TOO_LARGE = '{"title": "' + "x" * (3 * 1024 * 1024) + '"}'  # Django's limit: 2.5 MiB


@pytest.mark.parametrize("path", WRITES)
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(TOO_DEEP, 400, "parse_error"), (TOO_LARGE, 413, "request_too_large")],
    ids=["nested too deeply", "over the upload limit"],
)
def test_a_body_that_cannot_be_read_is_a_json_error(
    base_url: str,
    make_user: MakeUser,
    make_session: MakeSession,
    path: str,
    body: str,
    status: int,
    code: str,
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    response = httpx.post(
        f"{base_url}{API}/{path.format(sid=sid)}",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    _assert_json_error(response, status, code)


@pytest.mark.parametrize(
    "path",
    [
        "sse/events/",
        "sse/events/a%2Fb",
        "sse/events/a%0Ab",
        "sse/events/a/b",
        "sse/health/",
        "sse/health/a%2Fb",
        "sse/permission-response/",
        "sse/permission-response/a/b",
    ],
)
def test_a_malformed_session_id_in_the_path_is_400(
    base_url: str, make_user: MakeUser, path: str
) -> None:
    _, token = make_user()
    method = "POST" if "permission-response" in path else "GET"
    response = httpx.request(
        method, f"{base_url}{API}/{path}", headers={"Authorization": f"Bearer {token}"}, json={}
    )
    _assert_json_error(response, 400, "invalid_session_id")
