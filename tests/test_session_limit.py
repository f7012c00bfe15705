"""MAX_CONNECTIONS_PER_SESSION holds across every process sharing Redis, and
a killed process's streams stop counting once their leases run out."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack

import pytest

from sse.testing import EventStream, open_stream
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.servers import ASGIServer, RedisServer
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


async def test_many_leases_are_renewed_in_writes_of_a_batch_and_a_closed_stream_stays_closed(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process with many streams renews their leases a batch per write,
    so that no renewal holds the loop or Redis for long; a stream that
    closes between two writes is not given its lease back."""
    from sse._stream import leases
    from sse._stream.hub import StreamHub
    from sse._stream.queue import Connection
    from sse._transport.keys import leases_key

    monkeypatch.setattr(leases, "renew_every", lambda: 0.2)
    monkeypatch.setattr(leases, "lease_seconds", lambda: 60.0)
    monkeypatch.setattr(leases, "BATCH", 100)
    monkeypatch.setattr(leases, "PAUSE", 0.5)
    broker = StreamHub(redis_server.url).broker
    loop = asyncio.get_running_loop()
    prefix = uuid.uuid4().hex
    conns = [Connection(f"{prefix}-{n}", 10, loop) for n in range(250)]
    for n, conn in enumerate(conns):
        conn.lease = f"lease-{n}"
        assert await broker.take_lease(conn.session_id, conn.lease, 2, 1.0)
    keeping = asyncio.ensure_future(leases.keep(broker, lambda: conns))
    try:
        await asyncio.sleep(0.4)  # the first write (streams 0-99) is out, the next waits
        closing = conns[150]
        broker.drop_lease(closing.session_id, closing.lease, loop)
        closing.lease = None
        await asyncio.sleep(1.0)  # the two other writes
        with redis_server.client() as client:
            # Taken for 1 s at first, renewed for 60 s.
            remaining = {
                n: client.pttl(leases_key(conn.session_id)) for n, conn in enumerate(conns)
            }
            assert client.zscore(leases_key(closing.session_id), "lease-150") is None
    finally:
        keeping.cancel()
        await broker.aclose()
    assert remaining[150] == -2, "the closed stream's lease was taken again"
    renewed = [n for n, ttl in remaining.items() if ttl > 5000]
    assert renewed == [n for n in range(250) if n != 150]


async def test_one_renewal_holds_every_lease_of_every_session_longer_even_after_a_script_flush(
    redis_server: RedisServer,
) -> None:
    """Sessions with one stream and with several are renewed together; a
    Redis that lost its scripts (restarted, SCRIPT FLUSH) renews them too."""
    from sse._stream.hub import StreamHub
    from sse._transport.keys import leases_key

    broker = StreamHub(redis_server.url).broker
    prefix = uuid.uuid4().hex
    held = {f"{prefix}-a": ["a1"], f"{prefix}-b": ["b1", "b2", "b3"], f"{prefix}-c": ["c1", "c2"]}
    try:
        for sid, ids in held.items():
            for lease in ids:
                assert await broker.take_lease(sid, lease, 5, 1.0)
        with redis_server.client() as client:
            client.script_flush()
        await broker.renew_leases(held, 60.0)
        with redis_server.client() as client:
            now_ms = int(client.time()[0]) * 1000
            for sid, ids in held.items():
                assert client.pttl(leases_key(sid)) > 50_000
                assert client.zcard(leases_key(sid)) == len(ids)
                for lease in ids:
                    assert client.zscore(leases_key(sid), lease) > now_ms + 50_000
    finally:
        await broker.aclose()
