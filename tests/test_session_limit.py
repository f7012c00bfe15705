"""MAX_CONNECTIONS_PER_SESSION holds across every process sharing Redis, and
a killed process's streams stop counting once their leases run out."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import pytest

from sse.testing import EventStream, open_stream
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.servers import ASGIServer
from tests.streaming import events_url, health_data, until_connected

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("live_db")]

# Leases are renewed every second and run out after three.
SETTINGS = {"MAX_CONNECTIONS_PER_SESSION": 2, "HEARTBEAT_INTERVAL": 1}


def _two_servers(server_factory: ServerFactory) -> tuple[ASGIServer, ASGIServer]:
    return (
        server_factory("redis", SETTINGS, name="limit-a"),
        server_factory("redis", SETTINGS, name="limit-b"),
    )


async def _open(stack: AsyncExitStack, server: ASGIServer, sid: str, token: str) -> EventStream:
    stream = await stack.enter_async_context(open_stream(events_url(server.base_url, sid, token)))
    if stream.status_code == 200:
        await until_connected(stream)
    else:
        await stream.read()
    return stream


async def test_the_limit_counts_the_streams_of_every_process(
    server_factory: ServerFactory, make_user: MakeUser, make_session: MakeSession
) -> None:
    a, b = _two_servers(server_factory)
    user, token = make_user()
    sid = make_session(user).session_id
    async with AsyncExitStack() as streams:
        on_a = await _open(streams, a, sid, token)
        await _open(streams, b, sid, token)
        for server in (a, b):
            refused = await _open(streams, server, sid, token)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_connections"
            assert health_data(server.base_url, sid, token)["connections"] == 2
        # Leases are renewed: streams open longer than a lease still count.
        await asyncio.sleep(4)
        assert (await _open(streams, b, sid, token)).status_code == 429

        # Another session has places of its own.
        other = make_session(user).session_id
        assert (await _open(streams, b, other, token)).status_code == 200

        await on_a.aclose()
        deadline = time.monotonic() + 5
        while health_data(b.base_url, sid, token)["connections"] != 1:
            assert time.monotonic() < deadline, "the closed stream still counts"
            await asyncio.sleep(0.05)
        assert (await _open(streams, b, sid, token)).status_code == 200


async def test_a_killed_process_gives_its_places_back(
    server_factory: ServerFactory, make_user: MakeUser, make_session: MakeSession
) -> None:
    a, b = _two_servers(server_factory)
    user, token = make_user()
    sid = make_session(user).session_id
    async with AsyncExitStack() as streams:
        await _open(streams, a, sid, token)
        await _open(streams, a, sid, token)
        a.kill()  # SIGKILL: nothing gives the leases back
        killed = time.monotonic()
        assert (await _open(streams, b, sid, token)).status_code == 429
        while (await _open(streams, b, sid, token)).status_code != 200:
            assert time.monotonic() - killed < 6, "the killed process's streams still count"
            await asyncio.sleep(0.2)
        # Within a lease's time (3 s) and not before it could have run out.
        assert 1 <= time.monotonic() - killed < 6
