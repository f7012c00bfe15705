"""``REDIS_URL=redis+sentinel://...``: one primary, one replica and three
sentinels the suite starts.  Publishing, the listener and buffer reads
follow the primary through failovers (the primary SIGKILLed under load,
or demoted); what the new primary never received is a ``replay_gap``;
an approval pending across a failover completes exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from permissions.models import PermissionRequest
from sse._stream.events import ZERO, prepare
from sse._stream.hub import StreamHub
from sse._stream.queue import Connection
from sse._transport.connect import SentinelEndpoint
from sse._transport.connect import endpoint as redis_endpoint
from sse._transport.resp import RespProtocol
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.failover import (
    Follower,
    Publisher,
    assert_failover_gaps,
    assert_no_silent_hole,
    cut_replication,
    mend,
    publish_when_possible,
    replicated,
    start_agent,
    until,
)
from tests.permissions_support import orm, published_pending
from tests.streaming import events_url, health_data
from tests.topologies import MASTER_NAME, SentinelTopology

pytestmark = [pytest.mark.redis, pytest.mark.production]


def _replicated(topology: SentinelTopology) -> None:
    replicated(topology.current_primary())


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_publish_listen_and_read_through_the_sentinels(
    request: pytest.FixtureRequest, tls: bool
) -> None:
    topology: SentinelTopology = request.getfixturevalue("tls_sentinel" if tls else "sentinel")
    hub = StreamHub(topology.url)
    sid = f"sentinel-{uuid.uuid4().hex}"
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
        assert hub.broker.is_connected()
        assert hub.broker.buffer_info(sid).last_event_id == event_id
        with topology.current_primary().client() as client:
            assert client.exists(f"sse_buffer:{sid}")  # the names of one server
    finally:
        hub.detach(conn)
        await hub.broker.aclose()


async def test_sockets_refuse_a_replica(sentinel: SentinelTopology) -> None:
    """A socket opened where a stale answer of the sentinels points, a
    replica, fails: it takes subscriptions but stores no event."""
    endpoint = redis_endpoint(sentinel.url)
    assert isinstance(endpoint, SentinelEndpoint)
    replica = next(node for node in sentinel.nodes if node is not sentinel.current_primary())
    protocol = RespProtocol(asyncio.get_running_loop())
    with pytest.raises(ConnectionError, match="is not the primary"):
        await endpoint._adopt(protocol, endpoint._connection(("127.0.0.1", replica.port)), "ROLE")


async def test_a_publish_to_a_demoted_primary_goes_to_the_new_one(
    sentinel: SentinelTopology,
) -> None:
    """A failover with the old primary alive (it becomes a replica): the
    publisher's pooled connection gets READONLY, the script did not run,
    and the publish goes to the new primary once."""
    hub = StreamHub(sentinel.url)
    sid = f"demoted-{uuid.uuid4().hex}"
    old = sentinel.current_primary()
    first = hub.broker.publish(sid, prepare(sid, "tool_status", {"n": 1}))
    _replicated(sentinel)
    with sentinel.sentinels[0].client() as client:
        client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
    new = await asyncio.to_thread(sentinel.wait_failover, old)
    await asyncio.to_thread(sentinel.wait_agreed, new)
    second = publish_when_possible(hub.broker, sid, {"n": 2})
    with new.client() as client:
        ids = [entry[0].decode() for entry in client.xrange(f"sse_buffer:{sid}")]
    assert ids == [first, second]


async def test_streams_follow_the_primary_when_it_is_killed_under_load(
    live_db: None,
    server_factory: ServerFactory,
    sentinel: SentinelTopology,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    server = server_factory(env={"REDIS_URL": sentinel.url}, name="sentinel")
    publisher = StreamHub(sentinel.url).broker
    user, token = make_user()
    sid = make_session(user).session_id
    followers = [Follower(events_url(server.base_url, sid, token)).start() for _ in range(2)]
    try:
        with Publisher(publisher, sid) as publishing:
            await asyncio.sleep(1.0)
            old = sentinel.current_primary()
            old.kill()
            new = await asyncio.to_thread(sentinel.wait_failover, old)
            before = len(publishing.accepted)
            await until(lambda: len(publishing.accepted) >= before + 50)
        accepted = publishing.accepted
        for follower in followers:
            await follower.until(accepted[-1])
    finally:
        for follower in followers:
            await follower.stop()
    assert publishing.refused > 0  # some publishes met the outage
    for follower in followers:
        assert_no_silent_hole(follower.log, accepted)
        assert follower.ids[-1] == accepted[-1]
    health = health_data(server.base_url, sid, token)
    assert health["broker"]["connected"] is True
    assert health["listener_running"] is True
    with new.client() as client:
        assert client.xrevrange(f"sse_buffer:{sid}", count=1)[0][0].decode() == accepted[-1]


async def test_what_the_new_primary_never_received_is_a_replay_gap(
    live_db: None,
    server_factory: ServerFactory,
    sentinel: SentinelTopology,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    """The primary accepts two events its replica never gets, and dies.
    A stream that saw them and a client that had not both get replay_gap
    before the next event; nothing arrives silently out of order."""
    server = server_factory(env={"REDIS_URL": sentinel.url}, name="sentinel")
    publisher = StreamHub(sentinel.url).broker
    user, token = make_user()
    sid = make_session(user).session_id
    url = events_url(server.base_url, sid, token)
    follower = Follower(url).start()
    try:
        await asyncio.sleep(0.5)
        kept = [publisher.publish(sid, prepare(sid, "tool_status", {"n": n})) for n in (1, 2)]
        await follower.until(kept[-1])
        _replicated(sentinel)
        old = sentinel.current_primary()
        replica = next(node for node in sentinel.nodes if node is not old)
        cut_replication(replica)
        lost = [publisher.publish(sid, prepare(sid, "tool_status", {"n": n})) for n in (3, 4)]
        await follower.until(lost[-1])  # delivered live by the old primary
        old.kill()
        mend(replica)
        await asyncio.to_thread(sentinel.wait_failover, old)
        with replica.client() as client:
            stored = [entry[0].decode() for entry in client.xrange(f"sse_buffer:{sid}")]
        assert stored == kept  # the replica never got the last two
    except BaseException:
        await follower.stop()
        raise
    after = await assert_failover_gaps(url, publisher, sid, follower, kept, lost)
    last_gap = max(i for i, (kind, _) in enumerate(follower.log) if kind == "gap")
    assert ("event", after) in follower.log[last_gap:]


async def test_a_pending_approval_completes_exactly_once_across_a_failover(
    live_db: None,
    server_factory: ServerFactory,
    sentinel: SentinelTopology,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    """The agent waits in a process of its own; the primary dies and the
    person answers while no primary is elected: the decision stands once,
    the agent gets it (re-reading the row), a second answer is refused."""
    from tests.test_permissions_live import answer

    server = server_factory(env={"REDIS_URL": sentinel.url}, name="sentinel")
    user, token = make_user()
    sid = make_session(user).session_id
    agent = start_agent(sid, sentinel.url)
    try:
        (row,) = await published_pending(sid)
        _replicated(sentinel)
        old = sentinel.current_primary()
        old.kill()
        response = await answer(server, sid, token, {"approved": True, "reason": "go"})
        assert response.status_code == 200, response.text
        await asyncio.to_thread(sentinel.wait_failover, old)
        out, err = await asyncio.to_thread(agent.communicate, timeout=60)
    finally:
        if agent.returncode is None:
            agent.kill()
            agent.communicate()
    assert agent.returncode == 0, err
    decision = json.loads(out)
    assert (decision["status"], decision["decided_by"]) == ("approved", user.username)
    again = await answer(server, sid, token, {"approved": False})
    assert again.status_code == 409, again.text
    row = await orm(lambda: PermissionRequest.objects.get(pk=row.pk))
    assert (row.status, row.reason) == ("approved", "go")
    assert decision["decided_at"] == response.json()["data"]["decided_at"]
