"""The stream endpoint as a browser sees it: status codes, headers, framing."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from sse.testing import open_stream
from tests.conftest import MakeSession, MakeUser
from tests.streaming import (
    MakeStack,
    Stack,
    collect_types,
    messages,
    until_connected,
)


async def test_first_bytes_are_retry_and_connected(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    session = make_session(user)
    async with stack.open(session.session_id, token) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in stream.headers
        connected = await stream.next_event(timeout=2)
        assert stream.retry == 3000
        assert connected.id is None
        assert connected.event == "message"
        assert connected.json()["type"] == "connected"
        assert connected.json()["session_id"] == session.session_id


async def test_events_are_unnamed_json_messages_as_the_seed_reads_them(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    payloads = [
        {"status": "running", "text": "line one\nline two\r\nline three"},
        {"status": "完成", "emoji": "🙂", "quote": '"\\'},
        {"status": "done", "nested": {"list": [1, 2.5, None, True]}},
    ]
    async with stack.open(sid, token) as stream:
        await until_connected(stream)
        before = int(time.time() * 1000)
        ids = [await stack.apublish(sid, "tool_status", data) for data in payloads]
        events = await collect_types(stream, 3)
        after = int(time.time() * 1000)
    for event, event_id, data in zip(events, ids, payloads, strict=True):
        message = event.json()
        assert event.event == "message"  # no `event:` line: onmessage gets it
        assert event.id == event_id == message["id"]
        assert message["type"] == "tool_status"
        assert message["session_id"] == sid
        assert message["data"] == data
        assert before - 5 <= message["timestamp"] <= after + 5  # milliseconds
        assert str(message["timestamp"]) == event_id.split("-")[0]
    keys = [tuple(map(int, i.split("-"))) for i in ids]
    assert keys == sorted(keys)
    assert len(set(keys)) == 3


async def test_heartbeats_carry_no_id(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    async with stack.open(sid, token) as stream:
        await until_connected(stream)
        event_id = await stack.apublish(sid, "tool_status", {"status": "x"})
        await collect_types(stream, 1)
        heartbeat = (await collect_types(stream, 1, "heartbeat", timeout=5))[0]
    assert heartbeat.id is None
    assert heartbeat.last_event_id == event_id  # the resume position did not move
    message = heartbeat.json()
    assert set(message) == {"type", "timestamp"}
    assert abs(message["timestamp"] - time.time() * 1000) < 5000


async def test_every_tab_receives_every_event(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    async with stack.open(sid, token) as one, stack.open(sid, token) as two:
        await until_connected(one)
        await until_connected(two)
        ids = [await stack.apublish(sid, "tool_status", {"n": n}) for n in range(5)]
        got_one = await collect_types(one, 5)
        got_two = await collect_types(two, 5)
    assert [e.id for e in got_one] == ids == [e.id for e in got_two]


async def test_bearer_header_works_like_the_query_token(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, token = make_user()
    sid = make_session(user).session_id
    url = stack.events_url(sid)
    async with open_stream(url, headers={"Authorization": f"Bearer {token}"}) as stream:
        assert stream.status_code == 200
        await until_connected(stream)


async def test_staff_read_any_session(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    owner, _ = make_user()
    _, staff_token = make_user(staff=True)
    sid = make_session(owner).session_id
    async with stack.open(sid, staff_token) as stream:
        assert stream.status_code == 200


def _expired_token(user: object) -> str:
    token = AccessToken.for_user(user)  # type: ignore[arg-type]
    token.set_exp(lifetime=-timedelta(seconds=5))
    return str(token)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no_token", 401, "not_authenticated"),
        ("bad_token", 401, "token_invalid"),
        ("expired_token", 401, "token_invalid"),
        ("other_users_session", 404, "session_not_found"),
        ("unknown_session", 404, "session_not_found"),
        ("malformed_session_id", 400, "invalid_session_id"),
        ("malformed_last_event_id", 400, "invalid_last_event_id"),
    ],
)
def test_refusals_are_json_errors(
    stack: Stack,
    make_user: MakeUser,
    make_session: MakeSession,
    case: str,
    status: int,
    code: str,
) -> None:
    user, token = make_user()
    other, _ = make_user()
    sid = make_session(user).session_id
    url = {
        "no_token": stack.events_url(sid),
        "bad_token": stack.events_url(sid, "not-a-jwt"),
        "expired_token": stack.events_url(sid, _expired_token(user)),
        "other_users_session": stack.events_url(make_session(other).session_id, token),
        "unknown_session": stack.events_url("nobody-has-this", token),
        "malformed_session_id": stack.events_url("bad*id", token),
        "malformed_last_event_id": stack.events_url(sid, token, last_event_id="yesterday"),
    }[case]
    response = httpx.get(url, timeout=5)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_connection_limits_answer_429_and_503_with_retry_after(
    kind: str, make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    stack = make_stack(kind, MAX_CONNECTIONS_PER_SESSION=2, MAX_CONNECTIONS=3)
    user, token = make_user()
    first, second, third = (make_session(user).session_id for _ in range(3))
    async with stack.open(first, token) as a, stack.open(first, token) as b:
        await until_connected(a)
        await until_connected(b)
        async with stack.open(first, token) as refused:
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "3"
            await refused.read()
            assert refused.json()["error"]["code"] == "too_many_connections"
        async with stack.open(second, token) as c:
            await until_connected(c)
            async with stack.open(third, token) as busy:
                assert busy.status_code == 503
                assert busy.headers["retry-after"] == "3"
                await busy.read()
                assert busy.json()["error"]["code"] == "server_busy"
    # Closed streams free their places.
    await asyncio.sleep(0.5)
    async with stack.open(third, token) as again:
        assert again.status_code == 200


async def test_stream_ends_with_token_expired(
    stack: Stack, make_user: MakeUser, make_session: MakeSession
) -> None:
    user, _ = make_user()
    sid = make_session(user).session_id
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=2))
    async with stack.open(sid, str(token)) as stream:
        await until_connected(stream)
        rest = await stream.drain(timeout=8)
    assert messages(rest)[-1]["type"] == "token_expired"
    assert rest[-1].id is None
    assert stream.closed


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_burst_larger_than_the_queue_reaches_a_client_that_keeps_up(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession, kind: str
) -> None:
    stack = make_stack(kind, QUEUE_SIZE=100, BUFFER_SIZE=1000, HEARTBEAT_INTERVAL=5)
    user, token = make_user()
    sid = make_session(user).session_id
    async with stack.open(sid, token) as stream:
        await until_connected(stream)
        ids: list[str] = []
        thread = threading.Thread(
            target=lambda: ids.extend(
                stack.publish(sid, "tool_status", {"n": n}) for n in range(150)
            )
        )
        thread.start()
        thread.join()
        received = []
        try:
            received = [e.id for e in await collect_types(stream, 150, timeout=5)]
        except Exception as exc:
            pytest.fail(f"fast client cut off by a 150-event burst: {exc!r}")
    assert received == ids


async def _chunk(reader: asyncio.StreamReader, timeout: float = 5) -> bytes | None:
    """The next body chunk of a chunked response, as the server wrote it;
    None if none comes within ``timeout`` seconds."""
    try:
        size = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return None
    chunk = await reader.readexactly(int(size, 16) + 2)
    return chunk[:-2]


async def test_a_heartbeat_due_soon_goes_out_with_the_events(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    """An event written in the last fifth of the heartbeat interval carries
    the heartbeat in the same write, and no other heartbeat follows; one
    written earlier carries none."""
    stack = make_stack("memory", HEARTBEAT_INTERVAL=4)
    user, token = make_user()
    sid = make_session(user).session_id
    url = httpx.URL(stack.events_url(sid, token))
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(f"GET {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower()
        connected = await _chunk(reader)
        opened = loop.time()
        assert connected is not None
        assert b'"type":"connected"' in connected
        await asyncio.sleep(1.0)
        await stack.apublish(sid, "tool_status", {"n": 1})
        early = await _chunk(reader)
        await asyncio.sleep(opened + 3.6 - loop.time())
        await stack.apublish(sid, "tool_status", {"n": 2})
        late = await _chunk(reader)
        after = await _chunk(reader, timeout=opened + 4.5 - loop.time())
    finally:
        writer.close()
    assert early is not None
    assert b'"n":1' in early
    assert b"heartbeat" not in early
    assert late is not None
    assert late.count(b"\n\n") == 2, late
    event, beat, _ = late.split(b"\n\n")
    assert b'"n":2' in event
    assert beat.startswith(b'data: {"type":"heartbeat","timestamp":')
    assert after is None  # the heartbeat due at 4 s went out early, not again
