"""The Redis broker in this process against a real Redis: the listener's
recovery after its connection drops, and clients per event loop."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import threading
import time
import uuid

import pytest

from sse._stream.events import ZERO, prepare
from sse._stream.hub import StreamHub
from sse._stream.queue import Connection
from sse._transport import connect as connect_module
from sse._transport import listener as listener_module
from sse._transport import redis as redis_broker
from sse.exceptions import BrokerUnavailable
from tests.servers import RedisServer


async def _until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _live(hub: StreamHub, prefix: str, maxsize: int = 1000) -> Connection:
    """A connection of a new session, attached as a stream is once it has
    read the buffer (from then on, catching up is the listener's job)."""
    conn = Connection(f"{prefix}-{uuid.uuid4().hex}", maxsize, asyncio.get_running_loop())
    await hub.attach(conn)
    conn.go_live(ZERO)
    return conn


async def _drain(conn: Connection, seconds: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = await conn.get(deadline - time.monotonic())
        got += [e.id for e in batch or ()]
    return got


@pytest.mark.redis
async def test_catch_up_delivers_missed_events_before_live_ones(
    redis_server: RedisServer,
) -> None:
    """Events accepted while the listener was away arrive, in order, even
    when a live event comes in while the buffer is being read."""
    hub = StreamHub(redis_server.url)
    broker = hub.broker
    conn = await _live(hub, "repro")
    sid = conn.session_id
    listener = broker._listener(conn.loop)
    try:
        first = broker.publish(sid, prepare(sid, "tool_status", {"n": 0}))
        assert await _drain(conn, 0.3) == [first]

        original = broker.read

        async def slow_read(session_id, after):  # a Redis round trip under load
            await asyncio.sleep(0.3)
            return await original(session_id, after)

        broker.read = slow_read  # type: ignore[method-assign]
        with redis_server.client() as client:
            client.client_kill_filter(_type="pubsub")
        # accepted by Redis while the listener is away (loop is blocked: it
        # cannot have reconnected yet)
        missed = [broker.publish(sid, prepare(sid, "tool_status", {"n": n})) for n in (1, 2, 3)]
        await _until(lambda: not listener.connected or listener._subs.get(sid) is None)
        await _until(
            lambda: listener.connected and sid in listener._subs and listener._subs[sid].done()
        )
        live = broker.publish(sid, prepare(sid, "tool_status", {"n": 4}))
        got = await _drain(conn, 1.0)
    finally:
        hub.detach(conn)
        await broker.aclose()
    assert got == [*missed, live], f"missed events lost: got {got}"


@pytest.mark.redis
def test_short_lived_loops_leave_no_client_behind(
    redis_server: RedisServer,
) -> None:
    hub = StreamHub(redis_server.url)
    broker = hub.broker
    sid = f"repro-{uuid.uuid4().hex}"
    with redis_server.client() as client:
        before = len(client.client_list())
    for n in range(30):  # e.g. a Celery task doing asyncio.run(notifier.asend(...))
        asyncio.run(broker.apublish(sid, prepare(sid, "tool_status", {"n": n})))
    gc.collect()
    with redis_server.client() as client:
        after = len(client.client_list())
    assert broker._commands == {}
    assert broker._listeners == {}
    assert after - before <= 2, f"{after - before} Redis connections opened"


@pytest.mark.redis
@pytest.mark.parametrize("coalesce_ms", [0, 5])
async def test_listener_reconnects_under_steady_publishing_without_loss(
    redis_server: RedisServer, settings: object, monkeypatch: pytest.MonkeyPatch, coalesce_ms: int
) -> None:
    """No injected delay: a publisher thread keeps publishing while the
    listener's connection is killed, with events read as they arrive or
    (coalesce_ms) held back in batches when the connection drops."""
    monkeypatch.setattr(listener_module, "BUSY_RATE", 100)
    # BUFFER_SIZE covers the outages.
    settings.SSE = {"BUFFER_SIZE": 10_000, "COALESCE_MS": coalesce_ms}  # type: ignore[attr-defined]
    hub = StreamHub(redis_server.url)
    broker = hub.broker
    conn = await _live(hub, "repro", maxsize=100_000)
    sid = conn.session_id
    broker._listener(conn.loop)
    published: list[str] = []
    stop = threading.Event()

    def publisher() -> None:
        while not stop.is_set():
            published.append(broker.publish(sid, prepare(sid, "tool_status", {"n": 1})))
            time.sleep(0.001)

    thread = threading.Thread(target=publisher)
    thread.start()
    got: list[str] = []
    try:
        got += await _drain(conn, 0.3)
        for _ in range(5):
            with redis_server.client() as client:
                client.client_kill_filter(_type="pubsub")
            got += await _drain(conn, 0.6)
        stop.set()
        await asyncio.to_thread(thread.join)
        got += await _drain(conn, 1.0)
    finally:
        stop.set()
        hub.detach(conn)
        await broker.aclose()
    missing = [i for i in published if i not in set(got)]
    assert not missing, f"{len(missing)} of {len(published)} accepted events never delivered"


@pytest.mark.redis
async def test_a_silent_redis_is_pinged_then_dropped_and_reconnected(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that stops answering (a frozen host, a dead link) is noticed
    without any traffic: PING, then reconnect once it answers again."""
    import os
    import signal

    monkeypatch.setattr(listener_module, "IDLE_PING", 0.2)
    hub = StreamHub(redis_server.url)
    broker = hub.broker
    conn = await _live(hub, "silent")
    sid = conn.session_id
    listener = broker._listener(conn.loop)
    try:
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            await _until(lambda: not listener.connected, timeout=5)
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        await _until(
            lambda: listener.connected and sid in listener._subs and listener._subs[sid].done(),
            timeout=10,
        )
        event_id = broker.publish(sid, prepare(sid, "tool_status", {"n": 1}))
        assert await _drain(conn, 0.5) == [event_id]
    finally:
        hub.detach(conn)
        await broker.aclose()


@pytest.mark.redis
async def test_listener_authenticates_with_the_url_credentials(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A REDIS_URL with a user and password works for live events; a wrong
    password is reported, not retried silently."""
    user, password = f"sse-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with redis_server.client() as client:
        client.acl_setuser(
            user,
            enabled=True,
            passwords=[f"+{password}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )
    port = redis_server.port
    loop = asyncio.get_running_loop()
    hub = StreamHub(f"redis://{user}:{password}@127.0.0.1:{port}/0")
    broker = hub.broker
    conn = await _live(hub, "auth")
    try:
        event_id = broker.publish(conn.session_id, prepare(conn.session_id, "tool_status", {}))
        assert await _drain(conn, 0.3) == [event_id]
        read = await broker.read(conn.session_id, ZERO)  # buffer reads log in too
        assert [event.id for event in read.events] == [event_id]
    finally:
        hub.detach(conn)
        await broker.aclose()

    wrong = StreamHub(f"redis://{user}:not-{password}@127.0.0.1:{port}/0").broker
    try:
        wrong.start(loop)
        await _until(lambda: "Redis AUTH failed" in caplog.text)
        assert not wrong.listener_running
    finally:
        await wrong.aclose()


@pytest.mark.redis
async def test_concurrent_buffer_reads_each_get_their_own_session(
    redis_server: RedisServer,
) -> None:
    """A reconnect storm's reads share one pipelined connection: every
    reply must reach the read that asked for it."""
    hub = StreamHub(redis_server.url)
    broker = hub.broker
    sids = [f"many-{n}-{uuid.uuid4().hex[:6]}" for n in range(200)]
    published = {sid: broker.publish(sid, prepare(sid, "tool_status", {})) for sid in sids}
    try:
        reads = await asyncio.gather(*(broker.read(sid, ZERO) for sid in sids))
        for sid, read in zip(sids, reads, strict=True):
            assert [event.id for event in read.events] == [published[sid]]
            assert f'"session_id":"{sid}"'.encode() in read.events[0].frame
    finally:
        await broker.aclose()


@pytest.mark.redis
async def test_buffer_reads_use_the_database_of_the_url_and_outlive_a_restart(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/5"
    hub = StreamHub(url)
    broker = hub.broker
    sid = f"db5-{uuid.uuid4().hex}"
    try:
        event_id = broker.publish(sid, prepare(sid, "tool_status", {}))
        read = await broker.read(sid, ZERO)
        assert [event.id for event in read.events] == [event_id]
        with redis_server.client() as client:  # database 0
            assert not client.exists(f"sse_buffer:{sid}")
            client.script_flush()
        assert [event.id for event in (await broker.read(sid, ZERO)).events] == [event_id]

        redis_server.restart()  # the read connection breaks; the buffer is gone
        read = await broker.read(sid, ZERO)
        assert not read.exists
        assert read.events == []
    finally:
        await broker.aclose()


@pytest.mark.redis
async def test_a_read_from_a_redis_that_does_not_answer_fails_and_the_next_works(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    monkeypatch.setitem(connect_module.OPTIONS, "socket_timeout", 0.2)
    monkeypatch.setattr(redis_broker, "READ_ATTEMPTS", 2)
    hub = StreamHub(redis_server.url)
    broker = hub.broker
    sid = f"frozen-{uuid.uuid4().hex}"
    event_id = broker.publish(sid, prepare(sid, "tool_status", {}))
    try:
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable, match=r"no reply from Redis within 0\.2 s"):
                await broker.read(sid, ZERO)
            assert time.monotonic() - started < 3
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        read = await broker.read(sid, ZERO)
        assert [event.id for event in read.events] == [event_id]
    finally:
        await broker.aclose()


@pytest.mark.redis
async def test_replies_nobody_reads_any_more_are_not_reported_as_unretrieved(
    redis_server: RedisServer,
) -> None:
    """A lease renewal whose caller is cancelled (the server shuts down)
    while Redis is slow, then its connection drops: asyncio must not report
    the unread replies as "Future exception was never retrieved"."""
    import contextlib
    import os
    import signal

    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
    broker = StreamHub(redis_server.url).broker
    leases = {f"s{n}": [f"lease-{n}"] for n in range(5)}
    try:
        await broker.renew_leases(leases, 60.0)
        os.kill(redis_server.pid, signal.SIGSTOP)  # the replies are late
        calling = asyncio.ensure_future(broker.renew_leases(leases, 60.0))
        await asyncio.sleep(0.05)
        calling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await calling
        del calling
        redis_server.kill()  # the connection drops under the unread replies
        await asyncio.sleep(0.2)
        gc.collect()
        await asyncio.sleep(0.05)
        assert reported == []
    finally:
        loop.set_exception_handler(previous)
        await broker.aclose()
        redis_server.start()


# Publishes its argv's messages to a channel, one round trip each, as
# separate agents do: nothing batches them on the way to the listener.
_PUBLISHER = """
import sys, redis
client = redis.Redis.from_url(sys.argv[1])
for n in range(1, int(sys.argv[3]) + 1):
    client.publish(sys.argv[2], b"%d-0\\n" % n + sys.argv[4].encode())
"""


async def _publish_apart(url: str, sid: str, count: int) -> list[str]:
    body = prepare(sid, "tool_status", {"n": 1}).decode()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PUBLISHER, url, f"sse_events:{sid}", str(count), body
    )
    assert await process.wait() == 0
    return [f"{n}-0" for n in range(1, count + 1)]


def _wire_size(sid: str, event_id: str) -> int:
    """Bytes of one pubsub message of _publish_apart's, as Redis sends it."""
    channel = f"sse_events:{sid}".encode()
    payload = f"{event_id}\n".encode() + prepare(sid, "tool_status", {"n": 1})
    return len(
        b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
        % (len(channel), channel, len(payload), payload)
    )


@pytest.mark.redis
async def test_a_batch_is_read_once_it_is_full_not_when_the_hold_ends(
    redis_server: RedisServer, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COALESCE_MS caps the hold: with a hold of a second, events published
    a millisecond apart are still read BATCH (8) at a time as they come
    (about 50 a read here if only the hold and the kernel released them),
    and the last few arrive once the hold ends."""
    monkeypatch.setattr(listener_module, "BUSY_RATE", 100)
    settings.SSE = {"COALESCE_MS": 1000}  # type: ignore[attr-defined]
    hub = StreamHub(redis_server.url)
    broker = hub.broker
    conn = await _live(hub, "full", maxsize=100_000)
    listener = broker._listener(conn.loop)
    sid = conn.session_id

    def publish() -> list[str]:
        published = []
        for n in range(400):
            published.append(broker.publish(sid, prepare(sid, "tool_status", {"n": n})))
            time.sleep(0.001)
        return published

    try:
        await _until(lambda: listener._protocol is not None)
        protocol = listener._protocol
        assert isinstance(protocol, listener_module._Subscriber)
        assert protocol._sock is not None  # batching
        reads, replies = protocol.reads, protocol.replies
        published = await asyncio.to_thread(publish)
        assert await _drain(conn, 1.5) == published
        per_read = (protocol.replies - replies) / (protocol.reads - reads)
        assert listener_module.BATCH == 8
        assert 5 <= per_read <= 20, f"{per_read:.1f} events per read"
    finally:
        hub.detach(conn)
        await broker.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("coalesce_ms", [20, 0])
async def test_a_busy_listener_reads_events_in_batches_and_holds_none_back(
    redis_server: RedisServer, settings: object, monkeypatch: pytest.MonkeyPatch, coalesce_ms: int
) -> None:
    """Many events a second are read many at a time (the CPU they cost is
    mostly waking up), unless COALESCE_MS is 0; all arrive in order, the
    last of the burst too, and a lone event after the burst is not left
    waiting for more."""
    monkeypatch.setattr(listener_module, "BUSY_RATE", 100)  # busy on any machine
    marks: list[int] = []  # the socket's low-water marks, in the order set
    set_mark = listener_module._Subscriber._low_water

    def recording(self: listener_module._Subscriber, nbytes: int) -> None:
        marks.append(nbytes)
        set_mark(self, nbytes)

    monkeypatch.setattr(listener_module._Subscriber, "_low_water", recording)
    settings.SSE = {"COALESCE_MS": coalesce_ms}  # type: ignore[attr-defined]
    hub = StreamHub(redis_server.url)
    broker = hub.broker
    conn = await _live(hub, "busy", maxsize=100_000)
    listener = broker._listener(conn.loop)
    try:
        await _until(lambda: listener._protocol is not None)
        protocol = listener._protocol
        assert isinstance(protocol, listener_module._Subscriber)
        dup = protocol._sock
        reads, replies = protocol.reads, protocol.replies
        burst = await _publish_apart(redis_server.url, conn.session_id, 3000)
        assert await _drain(conn, 0.5) == burst
        per_read = (protocol.replies - replies) / (protocol.reads - reads)
        if coalesce_ms:
            # Raised to the bytes of BATCH messages, and every time lowered
            # again before it was raised anew.
            assert marks
            assert marks[1::2] == [1] * (len(marks) // 2)
            batch = listener_module.BATCH * _wire_size(conn.session_id, burst[-1])
            for raised in marks[::2]:
                assert batch * 0.9 <= raised <= batch * 1.1, (raised, batch)
            assert per_read >= 5, f"{per_read:.1f} events per read"
        else:
            assert dup is None
            assert marks == []

        await asyncio.sleep(0.1)
        lone = broker.publish(conn.session_id, prepare(conn.session_id, "tool_status", {}))
        assert await _drain(conn, 0.5) == [lone]
    finally:
        hub.detach(conn)
        await broker.aclose()
    if dup is not None:
        assert dup.fileno() == -1  # the duplicate descriptor is closed


@pytest.mark.redis
async def test_a_listener_closed_at_any_moment_of_connecting_ends(
    redis_server: RedisServer,
) -> None:
    """The close of a listener can come at any turn of the loop while it
    connects, the turn its connection completes included: the cancellation
    must end it then too (on Python 3.11, ``asyncio.wait_for`` returns the
    connection instead when both happen in one turn, and the listener
    served it forever)."""
    loop = asyncio.get_running_loop()

    async def turns_to_connect() -> int:
        broker = StreamHub(redis_server.url).broker
        listener = broker._listener(loop)
        turns = 0
        while not listener.connected:
            await asyncio.sleep(0)
            turns += 1
        await broker.aclose()
        return turns

    connected = sorted([await turns_to_connect() for _ in range(5)])[2]
    for attempt in range(150):
        turns = max(0, connected - 4 + attempt % 8)
        broker = StreamHub(redis_server.url).broker
        broker.start(loop)
        for _ in range(turns):
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(5):
                await broker.aclose()
        except TimeoutError:
            pytest.fail(f"the listener did not end when closed after {turns} turns of the loop")


@pytest.mark.redis
@pytest.mark.parametrize("keepalive", ["true", "false"])
async def test_the_urls_socket_options_reach_the_listener_and_the_buffer_reads(
    redis_server: RedisServer, keepalive: str
) -> None:
    """The listener's and the buffer reads' sockets are read by hand, but
    redis-py opens them from the URL: ``socket_keepalive`` is set on both."""
    loop = asyncio.get_running_loop()
    hub = StreamHub(f"{redis_server.url}?socket_keepalive={keepalive}")
    broker = hub.broker
    conn = await _live(hub, "keepalive")
    try:
        await broker.read(conn.session_id, ZERO)
        listener = broker._listeners[loop]
        sockets = [
            listener._protocol.transport.get_extra_info("socket"),
            broker._commands[loop]._protocol.transport.get_extra_info("socket"),
        ]
        options = [sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) for sock in sockets]
        assert options == ([1, 1] if keepalive == "true" else [0, 0])
    finally:
        hub.detach(conn)
        await broker.aclose()
