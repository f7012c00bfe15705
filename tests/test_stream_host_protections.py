"""A stream is a Django request like any other to the host project's
protections: its middleware (security headers, CORS, compression),
``ALLOWED_HOSTS``, and ASGI middleware wrapped around the application."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from agent_backend.settings import INSTALLED_APPS, MIDDLEWARE
from sse._stream.events import prepare
from sse._stream.hub import StreamHub
from sse.testing import open_stream
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.servers import APP, RedisServer
from tests.streaming import Stack, collect_types, events_url, health_url, until_connected

# The handler of ``sse.asgi`` (the host project's) and Django's own.
HANDLERS = pytest.mark.parametrize(
    "app", [APP, "tests.django_asgi:application"], ids=["sse.asgi", "django"]
)


def _overrides(**settings: Any) -> dict[str, str]:
    return {"DJANGO_OVERRIDES": json.dumps(settings)}


def _publisher(redis_server: RedisServer) -> Any:
    return StreamHub(redis_server.url).broker


async def test_streams_carry_the_headers_of_the_host_middleware(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    async with stack.open(sid, token) as stream:
        await until_connected(stream)
        assert stream.headers["x-frame-options"] == "DENY"
        assert stream.headers["x-content-type-options"] == "nosniff"
        assert stream.headers["referrer-policy"] == "same-origin"
    health = httpx.get(
        health_url(stack.base_url, sid), headers={"Authorization": f"Bearer {token}"}
    )
    assert health.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("path", ["events", "health"])
def test_a_host_not_in_allowed_hosts_gets_a_json_400(
    stack: Stack, make_user: MakeUser, make_session: MakeSession, path: str
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    url = (
        events_url(stack.base_url, sid, token)
        if path == "events"
        else health_url(stack.base_url, sid)
    )
    response = httpx.get(
        url,
        headers={"Host": "evil.example", "Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "error": {"code": "disallowed_host", "message": "The Host header is not allowed."},
    }


@pytest.mark.redis
def test_djangos_own_asgi_handler_refuses_a_disallowed_host_too(
    live_db: None,
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    """With the ``asgi.py`` of ``startproject`` the host's middleware answers
    first, with the project's own 400 page."""
    server = server_factory("redis", app="tests.django_asgi:application")
    user, token = make_user()
    sid = make_session(user).session_id
    response = httpx.get(
        events_url(server.base_url, sid, token), headers={"Host": "evil.example"}, timeout=5
    )
    assert response.status_code == 400


@pytest.mark.redis
@HANDLERS
async def test_gzip_middleware_never_compresses_a_stream(
    live_db: None,
    server_factory: ServerFactory,
    redis_server: RedisServer,
    make_user: MakeUser,
    make_session: MakeSession,
    app: str,
) -> None:
    middleware = ["django.middleware.gzip.GZipMiddleware", *MIDDLEWARE]
    server = server_factory("redis", env=_overrides(MIDDLEWARE=middleware), name="gzip", app=app)
    user, token = make_user()
    sid = make_session(user).session_id
    # The middleware is active: a page of the project is compressed.
    page = httpx.get(server.base_url + "/admin/login/", headers={"Accept-Encoding": "gzip"})
    assert page.headers.get("content-encoding") == "gzip", page.headers
    url = events_url(server.base_url, sid, token)
    async with open_stream(url, headers={"Accept-Encoding": "gzip"}) as stream:
        await until_connected(stream)
        assert "content-encoding" not in stream.headers
        event_id = _publisher(redis_server).publish(sid, prepare(sid, "tool_status", {"n": 1}))
        [event] = await collect_types(stream, 1, timeout=5)
        assert event.id == event_id


@pytest.mark.redis
@HANDLERS
async def test_django_cors_headers_answers_for_streams(
    live_db: None,
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    app: str,
) -> None:
    settings = {
        "INSTALLED_APPS": [*INSTALLED_APPS, "corsheaders"],
        "MIDDLEWARE": ["corsheaders.middleware.CorsMiddleware", *MIDDLEWARE],
        "CORS_ALLOWED_ORIGINS": ["http://app.example"],
        "CORS_ALLOW_CREDENTIALS": True,
    }
    server = server_factory("redis", env=_overrides(**settings), name="cors", app=app)
    user, token = make_user()
    sid = make_session(user).session_id
    url = events_url(server.base_url, sid, token)
    async with open_stream(url, headers={"Origin": "http://app.example"}) as stream:
        await until_connected(stream)
        assert stream.headers["access-control-allow-origin"] == "http://app.example"
        assert stream.headers["access-control-allow-credentials"] == "true"
    async with open_stream(url, headers={"Origin": "http://other.example"}) as stream:
        await until_connected(stream)
        assert "access-control-allow-origin" not in stream.headers


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_an_asgi_middleware_wrapping_send_sees_one_task_in_the_request_context(
    live_db: None,
    server_factory: ServerFactory,
    redis_server: RedisServer,
    make_user: MakeUser,
    make_session: MakeSession,
    kind: Any,
) -> None:
    """Every frame (connected, live events, heartbeats, the replay of a
    reconnect, the closing ``token_expired``) is sent by the response's own
    task, in the request's context, one send at a time, so a ``send``
    bounded by ``asyncio.timeout`` and reading a context variable works
    (``tests/wrapped_asgi.py``)."""
    server = server_factory(
        "redis",
        sse={"HEARTBEAT_INTERVAL": 1},
        app="tests.wrapped_asgi:application",
        server=kind,
    )
    user, token = make_user()
    sid = make_session(user).session_id
    publisher = _publisher(redis_server)
    async with open_stream(events_url(server.base_url, sid, token)) as stream:
        await until_connected(stream)
        ids = [publisher.publish(sid, prepare(sid, "tool_status", {"n": n})) for n in range(30)]
        received = await collect_types(stream, 30, timeout=10)
        assert [event.id for event in received] == ids
        await collect_types(stream, 1, type="heartbeat", timeout=5)
    missed = [publisher.publish(sid, prepare(sid, "tool_status", {"n": n})) for n in range(3)]
    short = AccessToken.for_user(user)
    short.set_exp(lifetime=timedelta(seconds=3))
    url = events_url(server.base_url, sid, str(short))
    async with open_stream(url, headers={"Last-Event-ID": ids[-1]}) as stream:
        await until_connected(stream)
        rest = await stream.drain(timeout=10)
    assert [event.id for event in rest if event.id] == missed
    assert json.loads(rest[-1].data)["type"] == "token_expired"
    report = httpx.get(server.base_url + "/_wrapper/report", timeout=5).json()
    assert report["problems"] == []
    assert report["body_sends"] >= 4
