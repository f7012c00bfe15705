"""Many processes, one Redis: cross-process delivery, faults, release, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from sse.exceptions import BrokerUnavailable
from sse.testing import open_stream
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.servers import ROOT, RedisServer, database_url
from tests.streaming import (
    MakeStack,
    collect_types,
    events_url,
    health_data,
    raw_get,
    until_connected,
)

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("live_db")]


def _numsub(redis_server: RedisServer, session_id: str) -> int:
    with redis_server.client() as client:
        return int(client.pubsub_numsub(f"sse_events:{session_id}")[0][1])


async def _eventually(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_publish_in_one_process_receive_in_two_others(
    server_factory: ServerFactory,
    redis_server: RedisServer,
    live_db: None,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    from django.db import connection

    first = server_factory("redis", name="first")
    second = server_factory("redis", name="second")
    user, token = make_user()
    sid = make_session(user).session_id
    path = events_url("", sid, token)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url(connection.settings_dict),
    }
    async with open_stream(first.base_url + path) as a, open_stream(second.base_url + path) as b:
        await until_connected(a)
        await until_connected(b)
        argv = [sys.executable, "manage.py", "sse_publish", sid, "tool_status"]
        result = await asyncio.to_thread(
            subprocess.run,
            [*argv, '{"status": "上传中"}'],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        event_id = result.stdout.strip()
        assert result.stdout == event_id + "\n"  # the id and nothing else
        got_a = (await collect_types(a, 1))[0]
        got_b = (await collect_types(b, 1))[0]
    assert got_a.id == got_b.id == event_id
    assert got_a.json()["data"] == {"status": "上传中"}


def test_sse_publish_refuses_bad_input(redis_server: RedisServer) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "REDIS_URL": redis_server.url}
    for args, message in [
        (["s1", "tool_status", "{not json"], "not valid JSON"),
        (["s1", "Bad-Type", "{}"], "invalid event type"),
        (["bad*id", "tool_status", "{}"], "invalid session id"),
        (["s1", "tool_status", "[1, 2]"], "must be a dict"),
    ]:
        result = subprocess.run(
            [sys.executable, "manage.py", "sse_publish", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert message in result.stderr


async def test_several_workers_behind_one_port(
    server_factory: ServerFactory, make_stack: MakeStack, make_user: MakeUser,
    make_session: MakeSession,
) -> None:  # fmt: skip
    stack = make_stack("redis")
    server = server_factory("redis", workers=2)
    user, token = make_user()
    sid = make_session(user).session_id
    url = events_url(server.base_url, sid, token)
    streams = [await open_stream(url) for _ in range(6)]
    try:
        for stream in streams:
            await until_connected(stream)
        event_id = await stack.apublish(sid, "tool_status", {"n": 1})
        for stream in streams:
            assert (await collect_types(stream, 1))[0].id == event_id
    finally:
        for stream in streams:
            await stream.aclose()


async def test_redis_restart_under_open_streams_loses_nothing_accepted(
    make_stack: MakeStack, redis_server: RedisServer, make_user: MakeUser,
    make_session: MakeSession,
) -> None:  # fmt: skip
    stack = make_stack("redis", HEARTBEAT_INTERVAL=1)
    user, token = make_user()
    sid = make_session(user).session_id
    base_url = stack.base_url
    async with stack.open(sid, token) as one, stack.open(sid, token) as two:
        await until_connected(one)
        await until_connected(two)
        accepted = [await stack.apublish(sid, "tool_status", {"n": n}) for n in range(3)]
        redis_server.stop()
        with pytest.raises(BrokerUnavailable):
            stack.publish(sid, "tool_status", {"n": "lost"})
        down = health_data(base_url, sid, token, timeout=10)
        assert down["status"] == "degraded"
        assert down["broker"]["connected"] is False
        await asyncio.sleep(1.5)  # streams stay open on heartbeats meanwhile
        redis_server.start()
        # Accepted while the listener may still be reconnecting: must arrive.
        accepted += [await stack.apublish(sid, "tool_status", {"n": n}) for n in range(3, 6)]
        got_one = await collect_types(one, 6, timeout=20)
        got_two = await collect_types(two, 6, timeout=20)
        assert [e.id for e in got_one] == accepted
        assert [e.id for e in got_two] == accepted
        accepted.append(await stack.apublish(sid, "tool_status", {"n": 6}))
        assert (await collect_types(one, 1))[0].id == accepted[-1]
    up = health_data(base_url, sid, token, timeout=10)
    assert up["status"] == "ok"
    assert up["listener_running"] is True


async def test_disconnect_releases_the_redis_subscription(
    make_stack: MakeStack, redis_server: RedisServer, make_user: MakeUser,
    make_session: MakeSession,
) -> None:  # fmt: skip
    stack = make_stack("redis")
    user, token = make_user()
    sid = make_session(user).session_id
    base_url = stack.base_url
    async with stack.open(sid, token) as one:
        await until_connected(one)
        async with stack.open(sid, token) as two:
            await until_connected(two)
            assert _numsub(redis_server, sid) == 1  # one subscription per process
            assert health_data(base_url, sid, token)["connections"] == 2
        await _eventually(lambda: health_data(base_url, sid, token)["connections"] == 1)
        assert _numsub(redis_server, sid) == 1
    await _eventually(lambda: _numsub(redis_server, sid) == 0)
    assert health_data(base_url, sid, token)["connections"] == 0


async def test_a_slow_client_is_cut_off_and_a_fast_one_keeps_receiving(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    stack = make_stack("redis", QUEUE_SIZE=10)
    user, token = make_user()
    sid = make_session(user).session_id
    base_url = stack.base_url
    port = int(stack.base_url.rsplit(":", 1)[1])
    slow = raw_get("127.0.0.1", port, events_url("", sid, token))
    try:
        async with stack.open(sid, token) as fast:
            await until_connected(fast)
            await _eventually(lambda: health_data(base_url, sid, token)["connections"] == 2)
            published: list[str] = []
            blob = "x" * 60_000

            def publish() -> None:
                for n in range(250):
                    published.append(stack.publish(sid, "tool_result", {"n": n, "blob": blob}))
                    time.sleep(0.004)

            thread = threading.Thread(target=publish)
            thread.start()
            got = await collect_types(fast, 250, "tool_result", timeout=60)
            thread.join()
            assert [e.id for e in got] == published
            await _eventually(lambda: health_data(base_url, sid, token)["connections"] == 1)
    finally:
        slow.close()
    assert "too slow: disconnected" in stack.server.log_text()


async def test_sigterm_ends_open_streams_promptly(
    server_factory: ServerFactory, make_user: MakeUser, make_session: MakeSession
) -> None:
    server = server_factory("redis", name="shutdown")
    user, token = make_user()
    sid = make_session(user).session_id
    url = events_url(server.base_url, sid, token)
    async with open_stream(url) as one, open_stream(url) as two:
        await until_connected(one)
        await until_connected(two)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert await one.drain(timeout=5) == []
        assert await two.drain(timeout=5) == []
        code = await asyncio.to_thread(server.stop, signal.SIGTERM, 10)
    assert code == -signal.SIGTERM  # a clean exit, not a kill after the timeout
    assert time.monotonic() - started < 5


async def test_tokens_never_reach_the_server_log(
    server_factory: ServerFactory, make_user: MakeUser, make_session: MakeSession
) -> None:
    server = server_factory("redis", name="logs")
    user, token = make_user()
    sid = make_session(user).session_id
    async with open_stream(events_url(server.base_url, sid, token)) as s:
        await until_connected(s)
    httpx.get(f"{server.base_url}/agent_backend/api/sse/events/{sid}?token=bad.{token}")
    httpx.get(f"{server.base_url}/agent_backend/api/sse/events/other?x=1&token={token}")
    await asyncio.sleep(0.5)
    log = server.log_text()
    assert "token=***" in log
    assert token not in log
    assert token.split(".")[2] not in log


async def test_daphne_serves_streams_too(
    server_factory: ServerFactory, make_stack: MakeStack, make_user: MakeUser,
    make_session: MakeSession,
) -> None:  # fmt: skip
    stack = make_stack("redis")
    server = server_factory("redis", server="daphne")
    user, token = make_user()
    sid = make_session(user).session_id
    url = events_url(server.base_url, sid, token)
    async with open_stream(url) as stream:
        assert stream.status_code == 200
        await until_connected(stream)
        event_id = await stack.apublish(sid, "tool_status", {"n": 1})
        assert (await collect_types(stream, 1))[0].id == event_id


async def test_the_listener_runs_before_any_stream_opens(
    server_factory: ServerFactory, make_user: MakeUser, make_session: MakeSession
) -> None:
    server = server_factory("redis", name="fresh")
    user, token = make_user()
    sid = make_session(user).session_id
    base_url = server.base_url
    await _eventually(lambda: health_data(base_url, sid, token)["listener_running"])


async def test_open_streams_hold_no_thread_each(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    stack = make_stack("redis", MAX_CONNECTIONS_PER_SESSION=50)
    user, token = make_user()
    sid = make_session(user).session_id
    pid = stack.server.pid

    def threads() -> int:
        return len(os.listdir(f"/proc/{pid}/task"))

    streams = [await stack.open(sid, token) for _ in range(40)]
    try:
        for stream in streams:
            await until_connected(stream)
        # The event loop, the listener's pools and a fixed set of workers.
        assert threads() < 30
    finally:
        for stream in streams:
            await stream.aclose()


async def test_streams_work_under_djangos_own_asgi_handler(
    server_factory: ServerFactory,
    redis_server: RedisServer,
    make_user: MakeUser,
    make_session: MakeSession,
) -> None:
    """A host project that kept the ``asgi.py`` of ``startproject`` gets the
    same stream; ``sse.asgi`` only makes it cheaper."""
    from sse._stream.hub import StreamHub
    from tests.streaming import Stack

    server = server_factory(
        "redis", sse={"HEARTBEAT_INTERVAL": 1}, app="tests.django_asgi:application"
    )
    stack = Stack("redis", server.base_url, StreamHub(redis_server.url).broker, server)
    user, token = make_user()
    sid = make_session(user).session_id
    async with stack.open(sid, token) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        await until_connected(stream)
        event_id = await stack.apublish(sid, "tool_status", {"n": 1})
        (event,) = await collect_types(stream, 1)
        heartbeat = (await collect_types(stream, 1, "heartbeat", timeout=5))[0]
    assert event.id == event_id
    assert event.json()["data"] == {"n": 1}
    assert heartbeat.id is None
