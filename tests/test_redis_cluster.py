"""``REDIS_URL=redis+cluster://...``: three primaries and three replicas the
suite starts.  A session's keys share a slot, its events travel by sharded
pub/sub on its shard only, one subscriber per shard in use; subscriptions
and buffer reads follow a slot that moves and a primary that is SIGKILLed
under load; what the new primary never received is a ``replay_gap``; an
approval pending across a failover completes exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from permissions.models import PermissionRequest
from sse._stream.events import ZERO, prepare
from sse._stream.hub import StreamHub
from sse._stream.queue import Connection
from sse._transport.connect import RedisEndpoint
from sse._transport.redis import RedisBroker
from sse._transport.sharded import ShardedListener, redirection
from sse.testing import open_stream
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
from tests.streaming import events_url, health_data, until_connected
from tests.topologies import ClusterTopology, Node

pytestmark = [pytest.mark.redis, pytest.mark.production]


def _sessions_on(topology: ClusterTopology, count: int) -> dict[str, Node]:
    """Session ids whose slots are served by ``count`` different primaries."""
    chosen: dict[str, Node] = {}
    while len({node.port for node in chosen.values()}) < count:
        sid = f"c-{uuid.uuid4().hex}"
        owner = topology.owner(f"{{{sid}}}")
        if owner.port not in {node.port for node in chosen.values()}:
            chosen[sid] = owner
    return chosen


def _listener(hub: StreamHub) -> ShardedListener:
    broker = hub.broker
    assert isinstance(broker, RedisBroker)
    listener = broker._listener(asyncio.get_running_loop())
    assert isinstance(listener, ShardedListener)
    return listener


async def _live(hub: StreamHub, sid: str) -> Connection:
    conn = Connection(sid, 1000, asyncio.get_running_loop())
    await hub.attach(conn)
    conn.go_live(ZERO)
    return conn


def _stored(node: Node, sid: str) -> list[str]:
    with node.client() as client:
        return [entry[0].decode() for entry in client.xrange(f"sse_buffer:{{{sid}}}")]


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_sessions_on_three_shards_one_subscriber_each(
    request: pytest.FixtureRequest, tls: bool
) -> None:
    topology: ClusterTopology = request.getfixturevalue("tls_cluster" if tls else "cluster")
    hub = StreamHub(topology.url)
    sessions = _sessions_on(topology, 3)
    conns = [await _live(hub, sid) for sid in sessions]
    try:
        published = {
            sid: hub.broker.publish(sid, prepare(sid, "tool_status", {})) for sid in sessions
        }
        for conn in conns:
            batch = await conn.get(5)
            assert [event.id for event in batch or ()] == [published[conn.session_id]]
        for sid, owner in sessions.items():
            assert [e.id for e in (await hub.broker.read(sid, ZERO)).events] == [published[sid]]
            with owner.client() as client:
                # One slot for the session's keys and channel, on its owner only.
                assert client.exists(f"sse_buffer:{{{sid}}}", f"sse_last:{{{sid}}}") == 2
                numsub = client.execute_command("PUBSUB", "SHARDNUMSUB", f"sse_events:{{{sid}}}")
                assert numsub[1] == 1
        assert set(_listener(hub)._shards) == {("127.0.0.1", n.port) for n in sessions.values()}
        assert hub.broker.listener_running
        assert hub.broker.is_connected()
        sid = next(iter(sessions))
        assert hub.broker.buffer_info(sid).last_event_id == published[sid]
    finally:
        for conn in conns:
            hub.detach(conn)
        await hub.broker.aclose()


def _move_slot(topology: ClusterTopology, sid: str, target: Node) -> None:
    """Reshard the session's slot to ``target`` as ``redis-cli --cluster
    reshard`` does: mark it, MIGRATE its keys, hand it over."""
    source = topology.owner(f"{{{sid}}}")
    with source.client() as src, target.client() as dst:
        slot = int(src.execute_command("CLUSTER", "KEYSLOT", f"{{{sid}}}"))
        source_id = src.execute_command("CLUSTER", "MYID").decode()
        target_id = dst.execute_command("CLUSTER", "MYID").decode()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    for node in topology.primaries():
        with node.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_a_moved_slot_takes_its_subscription_and_reads_along(
    cluster: ClusterTopology,
) -> None:
    """Redis pushes ``sunsubscribe`` when the slot leaves the node: the
    session is subscribed on the new owner and its stream caught up; a
    buffer read meets MOVED and follows it."""
    hub = StreamHub(cluster.url)
    sid, source = next(iter(_sessions_on(cluster, 1).items()))
    target = next(node for node in cluster.primaries() if node.port != source.port)
    conn = await _live(hub, sid)
    listener = _listener(hub)
    try:
        first = hub.broker.publish(sid, prepare(sid, "tool_status", {"n": 1}))
        assert [e.id for e in await conn.get(5) or ()] == [first]
        await asyncio.to_thread(_move_slot, cluster, sid, target)
        await until(
            lambda: listener._route.get(sid) is listener._shards.get(("127.0.0.1", target.port))
        )
        await until(lambda: listener._subs[sid].done() and listener.connected)
        read = await hub.broker.read(sid, ZERO)  # the old owner answers MOVED
        assert [event.id for event in read.events] == [first]
        second = publish_when_possible(hub.broker, sid, {"n": 2})
        assert _stored(target, sid) == [first, second]
        batch = await conn.get(5)
        # The new node's first event of the session is marked: the stream
        # either gets it or ends so that its client reconnects to a gap.
        assert conn.ended == "resync" or [e.id for e in batch or ()] == [second]
        read = await hub.broker.read(sid, (int(first.split("-")[0]), 0))
        assert [event.id for event in read.events] == [second]
        assert read.fences == (read.events[0].key,)
    finally:
        hub.detach(conn)
        await hub.broker.aclose()


async def test_streams_follow_their_shard_when_its_primary_is_killed_under_load(
    live_db: None,
    server_factory: ServerFactory,
    cluster: ClusterTopology,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    server = server_factory(env={"REDIS_URL": cluster.url}, name="cluster")
    publisher = StreamHub(cluster.url).broker
    user, token = make_user()
    sessions = _sessions_on(cluster, 2)
    for sid in sessions:
        make_session(user, sid)
    (hit, victim), (spared, _) = sessions.items()
    replica = cluster.replica_of(victim)
    followers = {sid: Follower(events_url(server.base_url, sid, token)).start() for sid in sessions}
    try:
        with Publisher(publisher, hit) as on_hit, Publisher(publisher, spared) as on_spared:
            await asyncio.sleep(1.0)
            victim.kill()
            await asyncio.to_thread(cluster.wait_promoted, replica)
            before = len(on_hit.accepted)
            await until(lambda: len(on_hit.accepted) >= before + 50)
        for sid, publishing in ((hit, on_hit), (spared, on_spared)):
            await followers[sid].until(publishing.accepted[-1])
    finally:
        for follower in followers.values():
            await follower.stop()
    assert on_hit.refused > 0
    for sid, publishing in ((hit, on_hit), (spared, on_spared)):
        assert_no_silent_hole(followers[sid].log, publishing.accepted)
        assert followers[sid].ids[-1] == publishing.accepted[-1]
    # The other shard's stream carried on (its publishes may have met
    # CLUSTERDOWN while a slot had no primary: cluster-require-full-coverage).
    assert followers[spared].gaps == []
    assert followers[spared].streams == 1
    assert health_data(server.base_url, hit, token)["listener_running"] is True


async def test_what_the_new_primary_never_received_is_a_replay_gap(
    live_db: None,
    server_factory: ServerFactory,
    cluster: ClusterTopology,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    server = server_factory(env={"REDIS_URL": cluster.url}, name="cluster")
    publisher = StreamHub(cluster.url).broker
    user, token = make_user()
    sid, victim = next(iter(_sessions_on(cluster, 1).items()))
    make_session(user, sid)
    replica = cluster.replica_of(victim)
    url = events_url(server.base_url, sid, token)
    follower = Follower(url).start()
    try:
        await asyncio.sleep(0.5)
        kept = [publisher.publish(sid, prepare(sid, "tool_status", {"n": n})) for n in (1, 2)]
        await follower.until(kept[-1])
        replicated(victim)
        cut_replication(replica)
        lost = [publisher.publish(sid, prepare(sid, "tool_status", {"n": n})) for n in (3, 4)]
        await follower.until(lost[-1])  # delivered live by the old primary
        victim.kill()
        mend(replica)
        await asyncio.to_thread(cluster.wait_promoted, replica)
        assert _stored(replica, sid) == kept  # the replica never got the last two
    except BaseException:
        await follower.stop()
        raise
    await assert_failover_gaps(url, publisher, sid, follower, kept, lost)


async def test_a_pending_approval_completes_exactly_once_across_a_failover(
    live_db: None,
    server_factory: ServerFactory,
    cluster: ClusterTopology,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    from tests.test_permissions_live import answer

    server = server_factory(env={"REDIS_URL": cluster.url}, name="cluster")
    user, token = make_user()
    sid, victim = next(iter(_sessions_on(cluster, 1).items()))
    make_session(user, sid)
    replica = cluster.replica_of(victim)
    agent = start_agent(sid, cluster.url)
    try:
        (row,) = await published_pending(sid)
        replicated(victim)
        victim.kill()
        response = await answer(server, sid, token, {"approved": True, "reason": "go"})
        assert response.status_code == 200, response.text
        await asyncio.to_thread(cluster.wait_promoted, replica)
        out, err = await asyncio.to_thread(agent.communicate, timeout=60)
    finally:
        if agent.returncode is None:
            agent.kill()
            agent.communicate()
    assert agent.returncode == 0, err
    decision = json.loads(out)
    assert (decision["status"], decision["decided_by"]) == ("approved", user.username)
    assert decision["decided_at"] == response.json()["data"]["decided_at"]
    again = await answer(server, sid, token, {"approved": False})
    assert again.status_code == 409, again.text
    row = await orm(lambda: PermissionRequest.objects.get(pk=row.pk))
    assert (row.status, row.reason) == ("approved", "go")


# -- without a cluster -------------------------------------------------------------


class _FakeConnection:
    host, port = "10.0.0.7", 7000

    def __init__(self, info: bytes) -> None:
        self.info = info

    async def send_command(self, *args: Any) -> None:
        pass

    async def read_response(self) -> bytes:
        return self.info


@pytest.mark.parametrize("version", [b"6.2.14", b"5.0.7"])
async def test_a_cluster_node_older_than_redis_7_is_refused_at_connect(version: bytes) -> None:
    endpoint = RedisEndpoint("redis://127.0.0.1:1/0")
    info = b"# Server\r\nredis_version:" + version + b"\r\nredis_mode:cluster\r\n"
    with pytest.raises(ConnectionError, match=r"needs Redis 7 or later .* 10\.0\.0\.7:7000 runs"):
        await endpoint._check(_FakeConnection(info), "VERSION")
    await endpoint._check(_FakeConnection(b"redis_version:7.0.15\r\n"), "VERSION")


def test_redirections_are_read() -> None:
    assert redirection("MOVED 3999 127.0.0.1:6381") == ("MOVED", 3999, ("127.0.0.1", 6381))
    assert redirection("ASK 1 [::1]:7002") == ("ASK", 1, ("::1", 7002))
    assert redirection("ERR unknown command") is None


async def test_the_session_limit_holds_on_the_sessions_shard(
    live_db: None,
    server_factory: ServerFactory,
    cluster: ClusterTopology,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    server = server_factory(
        sse={"MAX_CONNECTIONS_PER_SESSION": 1},
        env={"REDIS_URL": cluster.url},
        name="cluster-limit",
    )
    user, token = make_user()
    ((sid, owner),) = _sessions_on(cluster, 1).items()
    make_session(user, sid)
    url = events_url(server.base_url, sid, token)
    async with open_stream(url) as first:
        await until_connected(first)
        async with open_stream(url) as second:
            assert second.status_code == 429
        # The lease is in the session's slot, beside its buffer.
        with owner.client() as client:
            assert client.zcard(f"sse_leases:{{{sid}}}") == 1
        assert health_data(server.base_url, sid, token)["connections"] == 1


async def test_leases_are_renewed_on_each_sessions_shard(cluster: ClusterTopology) -> None:
    broker = StreamHub(cluster.url).broker
    held = {sid: [f"{sid}-1", f"{sid}-2"] for sid in _sessions_on(cluster, 3)}
    try:
        for sid, ids in held.items():
            for lease in ids:
                assert await broker.take_lease(sid, lease, 5, 1.0)
        await broker.renew_leases(held, 60.0)
        for sid, ids in held.items():
            with cluster.owner(f"{{{sid}}}").client() as client:
                assert client.pttl(f"sse_leases:{{{sid}}}") > 50_000
                scores = [client.zscore(f"sse_leases:{{{sid}}}", lease) for lease in ids]
                assert all(
                    score is not None and score > client.time()[0] * 1000 + 50_000
                    for score in scores
                )
    finally:
        await broker.aclose()
