"""The apps' endpoints answer the same whatever the host's ``REST_FRAMEWORK``
says: their own authentication (a Bearer token first, then the Django
session), authenticated users only, JSON errors in the apps' shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.test import Client

from tests.conftest import MakeSession, MakeUser
from tests.streaming import MakeStack, until_connected

API = "/agent_backend/api"
# A host whose own API is session-authenticated, open to anyone by default
# and browsable, with DRF's own error bodies.
HOST_DEFAULTS = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.BrowsableAPIRenderer",
        "rest_framework.renderers.JSONRenderer",
    ],
}
RunOrm = Callable[[Callable[[], Any]], Any]


@pytest.fixture
def base_url(make_stack: MakeStack, settings: Any) -> str:
    url = make_stack("memory").base_url
    settings.REST_FRAMEWORK = HOST_DEFAULTS
    return url


LoginCookie = Callable[[Any], dict[str, str]]


@pytest.fixture
def run_orm(_run_orm: RunOrm) -> RunOrm:
    return _run_orm


@pytest.fixture
def login_cookie(_run_orm: RunOrm) -> LoginCookie:
    """The cookie of a browser logged in to the host (its own login page)."""

    def make(user: Any) -> dict[str, str]:
        def login() -> str:
            client = Client()
            client.force_login(user)
            return str(client.cookies["sessionid"].value)

        return {"sessionid": _run_orm(login)}

    return make


def _assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    if code is not None:
        assert body["error"]["code"] == code


def test_anonymous_calls_are_401_in_the_apps_shape(base_url: str) -> None:
    calls = [
        httpx.get(f"{base_url}{API}/sse/sessions/", headers={"Accept": "text/html"}),
        httpx.post(f"{base_url}{API}/sse/sessions/", json={}),
        httpx.get(f"{base_url}{API}/sse/health/s-1"),
        httpx.post(f"{base_url}{API}/sse/permission-response/s-1", json={}),
    ]
    for response in calls:
        _assert_error(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "token", "status", "code"),
    [
        ("POST", "valid", 201, None),  # no CSRF asked: the Bearer token authenticated
        ("GET", "not-a-token", 401, "token_not_valid"),  # not 403: the JS client refreshes
    ],
    ids=["a valid token needs no csrf", "a bad token is 401"],
)
def test_a_bearer_token_decides_even_with_a_session_cookie(
    base_url: str,
    make_user: MakeUser,
    login_cookie: LoginCookie,
    method: str,
    token: str,
    status: int,
    code: str | None,
) -> None:
    user, valid = make_user()
    response = httpx.request(
        method,
        f"{base_url}{API}/sse/sessions/",
        json={"session_id": "cookie-and-token"} if method == "POST" else None,
        headers={"Authorization": f"Bearer {valid if token == 'valid' else token}"},
        cookies=login_cookie(user),
    )
    if code is None:
        assert response.status_code == status, response.text
        return
    _assert_error(response, status, code)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_session_cookie_alone_reads_and_needs_csrf_to_write(
    base_url: str, make_user: MakeUser, make_session: MakeSession, login_cookie: LoginCookie
) -> None:
    user, _ = make_user()
    make_session(user, "mine")
    cookies = login_cookie(user)
    listed = httpx.get(f"{base_url}{API}/sse/sessions/", cookies=cookies)
    assert listed.status_code == 200
    assert [s["session_id"] for s in listed.json()["data"]] == ["mine"]
    forged = httpx.post(f"{base_url}{API}/sse/sessions/", json={}, cookies=cookies)
    _assert_error(forged, 403, "permission_denied")


async def test_a_stream_opens_with_the_session_cookie(
    base_url: str, make_user: MakeUser, make_session: MakeSession, login_cookie: LoginCookie
) -> None:
    from sse.testing import open_stream

    user, _ = make_user()
    sid = make_session(user).session_id
    cookie = login_cookie(user)["sessionid"]
    url = f"{base_url}{API}/sse/events/{sid}"
    async with open_stream(url, headers={"Cookie": f"sessionid={cookie}"}) as stream:
        assert stream.status_code == 200
        await until_connected(stream)
    async with open_stream(url, headers={"Cookie": "sessionid=forged"}) as refused:
        assert refused.status_code == 401


async def test_a_cookie_stream_ends_when_its_user_logs_out(
    make_stack: MakeStack,
    make_user: MakeUser,
    make_session: MakeSession,
    login_cookie: LoginCookie,
    run_orm: RunOrm,
) -> None:
    from django.contrib.sessions.models import Session

    from sse.testing import open_stream
    from tests.streaming import collect_types

    base_url = make_stack("memory", HEARTBEAT_INTERVAL=1).base_url
    user, _ = make_user()
    sid = make_session(user).session_id
    cookie = login_cookie(user)["sessionid"]
    url = f"{base_url}{API}/sse/events/{sid}"
    async with open_stream(url, headers={"Cookie": f"sessionid={cookie}"}) as stream:
        await until_connected(stream)
        run_orm(lambda: Session.objects.filter(session_key=cookie).delete())  # logged out
        assert (await collect_types(stream, 1, "access_revoked", timeout=4))[0].id is None
