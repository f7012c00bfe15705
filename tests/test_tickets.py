"""Single-use stream tickets: a URL with ``?ticket=`` that reaches a log
(daphne's access log prints query strings) opens nothing."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sse.testing import open_stream
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.streaming import MakeStack, collect_types, until_connected

API = "/agent_backend/api"


def _ticket(base_url: str, token: str, session_id: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}{API}/sse/tickets/",
        json={"session_id": session_id},
        headers={"Authorization": f"Bearer {token}"},
    )


def _events(base_url: str, session_id: str, ticket: str) -> str:
    return f"{base_url}{API}/sse/events/{session_id}?ticket={ticket}"


async def test_a_ticket_opens_one_stream_once(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    base_url = make_stack("memory").base_url
    user, token = make_user()
    sid = make_session(user).session_id
    issued = _ticket(base_url, token, sid)
    assert issued.status_code == 201, issued.text
    assert set(issued.json()) == {"ticket", "expires_at"}
    ticket = issued.json()["ticket"]
    async with open_stream(_events(base_url, sid, ticket)) as stream:
        assert stream.status_code == 200
        await until_connected(stream)
    async with open_stream(_events(base_url, sid, ticket)) as again:
        assert again.status_code == 401
        await again.read()
        assert again.json()["error"]["code"] == "ticket_invalid"


async def test_a_request_refused_before_its_authorization_spends_no_ticket(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    base_url = make_stack("memory").base_url
    user, token = make_user()
    sid = make_session(user).session_id
    ticket = _ticket(base_url, token, sid).json()["ticket"]
    async with open_stream(_events(base_url, sid, ticket) + "&last_event_id=soon") as refused:
        assert refused.status_code == 400
        await refused.read()
        assert refused.json()["error"]["code"] == "invalid_last_event_id"
    async with open_stream(_events(base_url, sid, ticket)) as stream:
        assert stream.status_code == 200
        await until_connected(stream)


async def test_a_ticket_is_refused_late_or_for_another_session(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    base_url = make_stack("memory", TICKET_TTL=1).base_url
    user, token = make_user()
    sid, other = make_session(user).session_id, make_session(user).session_id
    elsewhere = _ticket(base_url, token, sid).json()["ticket"]
    async with open_stream(_events(base_url, other, elsewhere)) as stream:
        assert stream.status_code == 401
    late = _ticket(base_url, token, sid).json()["ticket"]
    await asyncio.sleep(1.2)
    async with open_stream(_events(base_url, sid, late)) as stream:
        assert stream.status_code == 401
    async with open_stream(_events(base_url, sid, "made-up")) as stream:
        assert stream.status_code == 401


def test_tickets_only_for_sessions_the_caller_may_read(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    base_url = make_stack("memory").base_url
    owner, _ = make_user()
    _, stranger = make_user()
    sid = make_session(owner).session_id
    refused = _ticket(base_url, stranger, sid)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "session_not_found"
    malformed = _ticket(base_url, stranger, "no spaces")
    assert malformed.status_code == 400
    anonymous = httpx.post(f"{base_url}{API}/sse/tickets/", json={"session_id": sid})
    assert anonymous.status_code == 401


@pytest.mark.postgres
async def test_streams_racing_with_one_ticket_on_two_servers_open_one(
    live_db: None, server_factory: ServerFactory, make_user: MakeUser, make_session: MakeSession
) -> None:
    servers = [server_factory().base_url, server_factory(name="second").base_url]
    user, token = make_user()
    sid = make_session(user).session_id
    for _ in range(5):
        ticket = _ticket(servers[0], token, sid).json()["ticket"]

        async def status(base_url: str, ticket: str = ticket) -> int:
            async with open_stream(_events(base_url, sid, ticket)) as stream:
                return stream.status_code

        codes = await asyncio.gather(*(status(servers[n % 2]) for n in range(4)))
        assert sorted(codes) == [200, 401, 401, 401]


async def test_a_stream_opened_with_a_ticket_ends_when_its_token_does(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    base_url = make_stack("memory", HEARTBEAT_INTERVAL=1).base_url
    user, _ = make_user()
    sid = make_session(user).session_id
    short = AccessToken.for_user(user)  # type: ignore[arg-type]
    short.set_exp(lifetime=timedelta(seconds=2))
    ticket = _ticket(base_url, str(short), sid).json()["ticket"]
    async with open_stream(_events(base_url, sid, ticket)) as stream:
        await until_connected(stream)
        ended = await collect_types(stream, 1, "token_expired", timeout=5)
    assert ended[0].json()["type"] == "token_expired"
