"""Every Redis connection the apps open honours the URL's TLS options: a
``redis-server`` speaking only TLS, with a CA this suite made, is reached
by publishing, the listener and buffer reads alike; a URL that does not
trust the CA reaches nothing."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sse._stream.events import ZERO, prepare
from sse._stream.hub import StreamHub
from sse._stream.queue import Connection
from sse.exceptions import BrokerUnavailable
from sse.testing import open_stream
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.servers import TLSRedisServer
from tests.streaming import collect_types, events_url, until_connected

pytestmark = pytest.mark.redis


async def test_publish_listen_and_read_over_tls(tls_redis_server: TLSRedisServer) -> None:
    hub = StreamHub(tls_redis_server.url)
    sid = f"tls-{uuid.uuid4().hex}"
    conn = Connection(sid, 100, asyncio.get_running_loop())
    await hub.attach(conn)
    conn.go_live(ZERO)
    try:
        event_id = hub.broker.publish(sid, prepare(sid, "tool_status", {"n": 1}))
        batch = await conn.get(5)
        assert [event.id for event in batch or ()] == [event_id]
        read = await hub.broker.read(sid, ZERO)
        assert [event.id for event in read.events] == [event_id]
        assert hub.broker.listener_running
    finally:
        hub.detach(conn)
        await hub.broker.aclose()


async def test_a_url_that_does_not_trust_the_ca_reaches_nothing(
    tls_redis_server: TLSRedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    hub = StreamHub(tls_redis_server.plain_tls_url)
    sid = f"tls-{uuid.uuid4().hex}"
    with pytest.raises(BrokerUnavailable, match="certificate verify failed"):
        hub.broker.publish(sid, prepare(sid, "tool_status", {}))
    try:
        with pytest.raises(BrokerUnavailable):
            await hub.broker.read(sid, ZERO)
        assert not hub.broker.listener_running
        assert "certificate verify failed" in caplog.text
    finally:
        await hub.broker.aclose()


async def test_a_server_streams_through_a_tls_redis(
    live_db: None,
    server_factory: ServerFactory,
    tls_redis_server: TLSRedisServer,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    server = server_factory(env={"REDIS_URL": tls_redis_server.url}, name="tls")
    publisher = StreamHub(tls_redis_server.url).broker
    user, token = make_user()
    sid = make_session(user).session_id
    first = publisher.publish(sid, prepare(sid, "tool_status", {"n": 0}))
    url = events_url(server.base_url, sid, token)
    async with open_stream(url, headers={"Last-Event-ID": "1-0"}) as stream:
        await until_connected(stream)
        [replayed] = await collect_types(stream, 1, timeout=5)  # a buffer read over TLS
        assert replayed.id == first
        live = publisher.publish(sid, prepare(sid, "tool_status", {"n": 1}))
        [event] = await collect_types(stream, 1, timeout=5)  # the listener over TLS
        assert event.id == live
