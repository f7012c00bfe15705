"""A worker and its Redis on two hosts (network namespaces) and the link
between them cut under open streams and a waiting approval, then restored:
the listener notices within its watchdog interval, reconnects and catches
up; nothing Redis accepted is lost; the approval is decided once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from permissions.models import PermissionRequest
from sse._stream.events import prepare
from sse._stream.hub import StreamHub
from tests import netns
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.permissions_support import orm, published_pending
from tests.streaming import health_data
from tests.test_permissions_live import (
    StartAgent,
    answer,
    decision_of,
    nothing_more,
    receive,
    start_agent,
    tab,
)

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("live_db")]
__all__ = ["start_agent"]  # the fixture

# The listener pings after 1 s of silence and reconnects after 2.
WATCHDOG = "health_check_interval=1"


@pytest.fixture
def isolated_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[netns.IsolatedRedis]:
    missing = netns.available()
    if missing is not None:
        pytest.skip(missing)
    redis = netns.IsolatedRedis(tmp_path_factory.mktemp("netns"))
    try:
        yield redis
    finally:
        redis.close()


async def test_a_cut_link_loses_nothing_redis_accepted(
    isolated_redis: netns.IsolatedRedis,
    server_factory: ServerFactory,
    make_user: MakeUser,
    make_session: MakeSession,
    start_agent: StartAgent,
) -> None:
    link = isolated_redis.links[0]  # the worker's; the agent and publisher use the other
    worker_url = isolated_redis.url(0, WATCHDOG)
    server = server_factory(
        "memory", {"HEARTBEAT_INTERVAL": 1}, {"REDIS_URL": worker_url}, name=link.host
    )
    publisher = StreamHub(isolated_redis.url(1)).broker
    user, token = make_user()
    sid = make_session(user).session_id
    published: list[str] = []

    def publish(n: int) -> None:
        published.append(publisher.publish(sid, prepare(sid, "tool_status", {"n": n})))

    async with tab(server, sid, token) as one, tab(server, sid, token) as two:
        for stream in (one, two):
            await receive(stream, "connected")
        agent = start_agent(sid, timeout=120, redis_url=isolated_redis.url(1))
        for stream in (one, two):
            await receive(stream, "permission_request")
        assert len(await published_pending(sid)) == 1
        for n in range(3):
            publish(n)

        link.cut()
        try:
            # The worker cannot publish the decision: it is recorded, and the
            # agent, which still reaches Redis, reads it from the database.
            response = await answer(server, sid, token, {"approved": True, "reason": "cut"})
            assert response.status_code == 200, response.text
            for n in range(3, 8):
                publish(n)  # accepted by Redis, out of the worker's reach
            decision = await decision_of(agent, timeout=30)
            assert decision["status"] == "approved"
            # Noticed by the watchdog: the worker reports it.
            assert health_data(server.base_url, sid, token, timeout=10)["status"] == "degraded"
        finally:
            link.restore()
        for n in range(8, 10):
            publish(n)

        for stream in (one, two):
            seen = await receive(stream, "permission_cleared", timeout=30)
            while len([e for e in seen if e.json()["type"] == "tool_status"]) < len(published):
                seen.append(await stream.next_event(30))
            types = [event.json()["type"] for event in seen if event.json()["type"] != "heartbeat"]
            # The same streams: caught up, not told to reconnect or of a gap.
            assert not {"connected", "replay_gap", "resync"} & set(types), types
            ids = [e.id for e in seen if e.json()["type"] == "tool_status"]
            assert ids == published
            assert types.count("permission_cleared") == 1
            assert await nothing_more(stream, wait=1) == []

    rows = await orm(lambda: list(PermissionRequest.objects.filter(session_id=sid)))
    assert [(r.status, r.announced) for r in rows] == [("approved", True)]
