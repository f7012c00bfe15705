"""Reconnecting with Last-Event-ID: every missed event once, then live."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from sse.testing import open_stream
from tests.conftest import MakeSession, MakeUser
from tests.streaming import (
    MakeStack,
    Stack,
    collect_types,
    health_url,
    messages,
    until_connected,
)


@pytest.mark.parametrize(
    "last_event_id",
    [
        "18446744073709551615-18446744073709551615",
        "99999999999999999999",
        "9223372036854775808-0",
        "1-99999999999999999999",
    ],
)
async def test_ids_past_what_any_broker_issues_are_malformed_not_a_broker_failure(
    stack: Stack, make_user: MakeUser, make_session: MakeSession, last_event_id: str
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    stack.publish(sid, "tool_status", {"n": 1})  # buffered: the read would compare
    async with stack.open(sid, token, last_event_id=last_event_id) as stream:
        assert stream.status_code == 400
        await stream.read()
        assert stream.json()["error"]["code"] == "invalid_last_event_id"
    largest = "9223372036854775807-9223372036854775807"
    async with stack.open(sid, token, last_event_id=largest) as stream:
        assert stream.status_code == 200
        await until_connected(stream)
        assert (await stream.next_event()).json()["type"] == "replay_gap"


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_replay_then_live_without_gap_or_duplicate_while_publishing(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession, kind: str
) -> None:
    stack = make_stack(kind, BUFFER_SIZE=1000)
    user, token = make_user()
    sid = make_session(user).session_id
    published: list[str] = []
    done = threading.Event()

    def publisher(stack: Stack = stack, sid: str = sid) -> None:
        for n in range(400):
            published.append(stack.publish(sid, "tool_status", {"n": n}))
            time.sleep(0.002)
        done.set()

    received: list[str] = []
    thread = threading.Thread(target=publisher)
    async with stack.open(sid, token) as stream:
        await until_connected(stream)
        thread.start()
        received += [e.id for e in await collect_types(stream, 20)]  # type: ignore[misc]
    # Reconnect again and again while the publisher keeps going, with the
    # header (as EventSource does) and with the query parameter.
    for attempt in range(6):
        await asyncio.sleep(0.05)
        if attempt % 2:
            stream = await stack.open(sid, token, headers={"Last-Event-ID": received[-1]})
        else:
            stream = await stack.open(sid, token, last_event_id=received[-1])
        async with stream:
            connected = await until_connected(stream)
            assert connected["data"]["last_event_id"] == received[-1]
            received += [e.id for e in await collect_types(stream, 15)]  # type: ignore[misc]
    thread.join(30)
    assert done.is_set()
    async with stack.open(sid, token, last_event_id=received[-1]) as stream:
        await until_connected(stream)
        while received[-1] != published[-1]:
            received += [e.id for e in await collect_types(stream, 1)]  # type: ignore[misc]
    assert received == published, kind


async def test_replay_gap_when_the_id_left_the_buffer(
    stack: Stack, make_user: MakeUser, make_session: MakeSession, make_stack: MakeStack
) -> None:
    stack = make_stack(stack.kind, BUFFER_SIZE=5)
    user, token = make_user()
    sid = make_session(user).session_id
    ids = [stack.publish(sid, "tool_status", {"n": n}) for n in range(10)]
    async with stack.open(sid, token, last_event_id=ids[1]) as stream:
        await until_connected(stream)
        gap = await stream.next_event()
        replayed = await collect_types(stream, 5)
    assert gap.id is None
    assert gap.json()["type"] == "replay_gap"
    assert gap.json()["data"] == {"missed_from": ids[1], "resumed_at": ids[5]}
    assert [e.id for e in replayed] == ids[5:]


async def test_no_gap_reported_when_the_buffer_still_covers_the_id(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    ids = [stack.publish(sid, "tool_status", {"n": n}) for n in range(4)]
    async with stack.open(sid, token, last_event_id=ids[0]) as stream:
        await until_connected(stream)
        replayed = await collect_types(stream, 3)
        live_id = await stack.apublish(sid, "tool_result", {"success": True})
        live = await collect_types(stream, 1, "tool_result")
    types = [m["type"] for m in messages(replayed)]
    assert "replay_gap" not in types
    assert [e.id for e in replayed] == ids[1:]
    assert live[0].id == live_id


async def test_an_id_this_buffer_never_issued_replays_everything_after_a_gap(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    ids = [stack.publish(sid, "tool_status", {"n": n}) for n in range(3)]
    future = f"{int(ids[-1].split('-')[0]) + 10_000_000}-0"
    async with stack.open(sid, token, last_event_id=future) as stream:
        await until_connected(stream)
        gap = await stream.next_event()
        replayed = await collect_types(stream, 3)
        live_id = await stack.apublish(sid, "tool_status", {"n": "live"})
        live = await collect_types(stream, 1)
    assert gap.json()["type"] == "replay_gap"
    assert gap.json()["data"] == {"missed_from": future, "resumed_at": ids[0]}
    assert [e.id for e in replayed] == ids
    assert live[0].id == live_id


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_an_expired_buffer_is_reported_as_a_gap(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession, kind: str
) -> None:
    stack = make_stack(kind, BUFFER_TTL=1)
    user, token = make_user()
    sid = make_session(user).session_id
    seen = stack.publish(sid, "tool_status", {"n": 1})
    stack.publish(sid, "tool_status", {"n": 2})  # never seen, expired with the buffer
    await asyncio.sleep(2.2)
    async with stack.open(sid, token, last_event_id=seen) as stream:
        await until_connected(stream)
        gap = await stream.next_event()
    assert gap.json()["type"] == "replay_gap", kind
    assert gap.json()["data"] == {"missed_from": seen, "resumed_at": None}


async def test_health_reports_real_figures(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    url = health_url(stack.base_url, sid)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers) as client:
        empty = (await client.get(url)).json()["data"]
        ids = [await stack.apublish(sid, "tool_status", {"n": n}) for n in range(3)]
        async with (
            open_stream(stack.events_url(sid, token)) as one,
            open_stream(stack.events_url(sid, token)) as two,
        ):
            await until_connected(one)
            await until_connected(two)
            busy = (await client.get(url)).json()
        await asyncio.sleep(0.3)
        after = (await client.get(url)).json()["data"]
        assert (await client.get(url.replace(sid, "bad*id"))).status_code == 400
        assert (await client.get(url, headers={"Authorization": ""})).status_code == 401
    assert empty["buffered_events"] == 0
    assert empty["last_event_id"] is None
    assert busy["success"] is True
    data = busy["data"]
    assert data["session_id"] == sid
    assert data["status"] == "ok"
    assert data["connections"] == 2
    assert data["broker"] == {"backend": stack.kind, "connected": True}
    assert data["listener_running"] is True
    assert data["buffered_events"] == 3
    assert data["last_event_id"] == ids[-1]
    assert data["pending_permissions"] == 0
    assert "server_time" in data
    assert after["connections"] == 0


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_no_gap_after_the_buffer_expired_when_nothing_was_missed(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession, kind: str
) -> None:
    stack = make_stack(kind, BUFFER_TTL=1, HEARTBEAT_INTERVAL=1)
    user, token = make_user()
    sid = make_session(user).session_id
    async with stack.open(sid, token) as stream:
        await until_connected(stream)
        last = stack.publish(sid, "tool_status", {"n": 1})
        assert [e.id for e in await collect_types(stream, 1)] == [last]
    await asyncio.sleep(2.2)  # idle longer than BUFFER_TTL; client saw everything
    async with stack.open(sid, token, last_event_id=last) as stream:
        await until_connected(stream)
        nxt = await stream.next_event(timeout=3)
    assert nxt.json()["type"] != "replay_gap", "replay_gap although no event was dropped"
