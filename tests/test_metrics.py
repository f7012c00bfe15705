"""``GET …/sse/metrics``: who may read it, what it counts, and that several
worker processes answer as one (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from permissions import arequest_permission
from sse import notifier
from sse._stream.events import prepare
from sse._transport import Broker
from sse.testing import open_stream
from tests.conftest import MakeSession, MakeUser, ServerFactory
from tests.metrics_support import SPEC_FAMILIES, Scrape, eventually, scrape
from tests.permissions_support import published_pending
from tests.servers import RedisServer
from tests.streaming import (
    MakeStack,
    Stack,
    collect_types,
    events_url,
    raw_get,
    until_connected,
)

pytestmark = pytest.mark.usefixtures("live_db")

API = "/agent_backend/api"
METRICS_TOKEN = "metrics-token-0123456789abcdef"


@dataclass
class Metered:
    """A server (in this process, the in-memory broker), a session, its
    owner's token, and the server's metrics as a staff user reads them."""

    stack: Stack
    sid: str
    token: str
    staff_token: str

    def read(self) -> Scrape:
        return scrape(self.stack.base_url, self.staff_token)

    async def aread(self) -> Scrape:
        return await asyncio.to_thread(self.read)

    async def until(self, check: Callable[[Scrape], bool], timeout: float = 10) -> Scrape:
        return await asyncio.to_thread(eventually, self.read, check, timeout)


@pytest.fixture
def metered(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> Callable[..., Metered]:
    """``metered(**sse)``."""

    def make(**sse: Any) -> Metered:
        stack = make_stack("memory", **sse)
        _, staff_token = make_user(staff=True)
        user, token = make_user()
        return Metered(stack, make_session(user).session_id, token, staff_token)

    return make


def _json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == code, response.json()


def test_staff_or_the_metrics_token_may_read_them(
    make_stack: MakeStack, make_user: MakeUser, settings: Any
) -> None:
    base_url = make_stack("memory").base_url
    url = f"{base_url}{API}/sse/metrics/"
    _, token = make_user()
    _, staff_token = make_user(staff=True)

    response = httpx.get(url)
    _json_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    _json_error(
        httpx.get(url, headers={"Authorization": f"Bearer {token}"}), 403, "permission_denied"
    )
    _json_error(
        httpx.get(url, headers={"Authorization": "Bearer nonsense"}), 401, "token_not_valid"
    )
    _json_error(
        httpx.post(url, headers={"Authorization": f"Bearer {staff_token}"}),
        405,
        "method_not_allowed",
    )

    found = scrape(base_url, staff_token)
    for name, kind in SPEC_FAMILIES.items():
        assert found.families.get(name) == kind, (name, found.families)
    # The names a scrape config spells without the slash work as well, unredirected.
    assert scrape(base_url, staff_token, f"{API}/sse/metrics").families == found.families

    # The metrics token, and only that one: before it is set, it is one more bad token.
    _json_error(
        httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}), 401, "token_not_valid"
    )
    settings.SSE = {**settings.SSE, "METRICS_TOKEN": METRICS_TOKEN}
    assert scrape(base_url, METRICS_TOKEN).families == found.families
    assert scrape(base_url, staff_token).families == found.families  # staff still may
    wrong = METRICS_TOKEN[:-1] + "X"
    _json_error(
        httpx.get(url, headers={"Authorization": f"Bearer {wrong}"}), 401, "token_not_valid"
    )
    _json_error(
        httpx.get(url, headers={"Authorization": f"Basic {METRICS_TOKEN}"}),
        401,
        "not_authenticated",
    )
    # OpenMetrics for a scraper that asks for it (Prometheus does).
    response = httpx.get(
        url,
        headers={
            "Authorization": f"Bearer {METRICS_TOKEN}",
            "Accept": "application/openmetrics-text; version=1.0.0",
        },
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_streams_and_their_events_are_counted(metered: Callable[..., Metered]) -> None:
    m = metered()
    stack, sid, token = m.stack, m.sid, m.token
    before = await m.aread()
    async with stack.open(sid, token) as one, stack.open(sid, token) as two:
        await until_connected(one)
        await until_connected(two)
        ids = [
            await asyncio.to_thread(notifier.send, sid, "tool_status", {"n": n}) for n in range(3)
        ]
        for stream in (one, two):
            assert [event.id for event in await collect_types(stream, 3)] == ids
        during = await m.aread()
    refused = await asyncio.to_thread(httpx.get, stack.events_url(sid, token, last_event_id="x"))
    assert refused.status_code == 400
    after = await m.until(lambda s: s.value("sse_connections") == before.value("sse_connections"))

    def grew(scraped: Scrape, name: str, **labels: str) -> float:
        return scraped.value(name, **labels) - before.value(name, **labels)

    assert grew(during, "sse_connections") == 2
    assert grew(during, "sse_stream_opens_total", status="200") == 2
    assert grew(during, "sse_events_published_total") == 3
    assert grew(during, "sse_events_delivered_total") == 6  # each event to two streams
    assert grew(after, "sse_stream_opens_total", status="400") == 1
    assert grew(after, "sse_events_delivered_total") == 6
    assert grew(after, "sse_replay_gaps_total") == 0
    assert during.value("sse_broker_connected", broker="memory") == 1
    assert during.value("sse_listener_running", broker="memory") == 1


async def test_a_replay_gap_is_counted(metered: Callable[..., Metered]) -> None:
    m = metered(BUFFER_SIZE=2)
    stack, sid, token = m.stack, m.sid, m.token
    before = await m.aread()
    ids = [await stack.apublish(sid, "tool_status", {"n": n}) for n in range(5)]
    async with stack.open(sid, token, last_event_id=ids[0]) as stream:
        await until_connected(stream)
        assert (await stream.next_event()).json()["type"] == "replay_gap"
        assert [event.id for event in await collect_types(stream, 2)] == ids[3:]
        after = await m.aread()
    assert after.value("sse_replay_gaps_total") - before.value("sse_replay_gaps_total") == 1
    delivered = after.value("sse_events_delivered_total") - before.value(
        "sse_events_delivered_total"
    )
    assert delivered == 2  # the replayed ones


async def test_a_slow_client_disconnect_is_counted(metered: Callable[..., Metered]) -> None:
    m = metered(QUEUE_SIZE=10)
    stack, sid, token = m.stack, m.sid, m.token
    port = int(stack.base_url.rsplit(":", 1)[1])
    before = await m.aread()
    slow = raw_get("127.0.0.1", port, events_url("", sid, token))
    try:
        await m.until(lambda s: s.value("sse_connections") == before.value("sse_connections") + 1)
        blob = "x" * 60_000
        stop = threading.Event()

        def publish() -> None:
            for n in range(400):
                if stop.is_set():
                    return
                stack.publish(sid, "tool_result", {"n": n, "blob": blob})
                time.sleep(0.002)

        thread = threading.Thread(target=publish)
        thread.start()
        try:
            after = await m.until(
                lambda s: (
                    s.value("sse_slow_client_disconnects_total")
                    > before.value("sse_slow_client_disconnects_total")
                ),
                30,
            )
        finally:
            stop.set()
            thread.join()
    finally:
        slow.close()
    grown = after.value("sse_slow_client_disconnects_total")
    assert grown - before.value("sse_slow_client_disconnects_total") == 1


async def test_permission_requests_are_counted_and_timed(metered: Callable[..., Metered]) -> None:
    m = metered()
    stack, sid, token = m.stack, m.sid, m.token
    before = await m.aread()
    agent = asyncio.create_task(arequest_permission(sid, "write_file", {"path": "a"}, timeout=30))
    await published_pending(sid)
    await asyncio.sleep(1.1)
    waiting = await m.aread()
    response = await asyncio.to_thread(
        httpx.post,
        f"{stack.base_url}{API}/sse/permission-response/{sid}",
        json={"approved": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    assert (await agent).status == "approved"
    expired = await arequest_permission(sid, "write_file", {"path": "b"}, timeout=0.3)
    assert expired.status == "expired"
    after = await m.aread()

    def grew(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert waiting.value("permissions_pending") >= 1
    assert waiting.value("permissions_oldest_pending_seconds") >= 1
    assert grew("permissions_requests_total", status="approved") == 1
    assert grew("permissions_requests_total", status="expired") == 1
    # Only answers are timed: the expired request is not.
    assert grew("permissions_decision_seconds_count") == 1
    assert 1 <= grew("permissions_decision_seconds_sum") < 30
    assert grew("permissions_decision_seconds_bucket", le="1.0") == 0
    assert grew("permissions_decision_seconds_bucket", le="30.0") == 1


@pytest.mark.redis
async def test_a_redis_outage_shows_and_the_reconnect_is_counted(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession, redis_server: RedisServer
) -> None:
    stack = make_stack("redis", METRICS_TOKEN=METRICS_TOKEN)

    def read() -> Scrape:
        return scrape(stack.base_url, METRICS_TOKEN)

    up = await asyncio.to_thread(
        eventually, read, lambda s: s.value("sse_listener_running", broker="redis") == 1
    )
    assert up.value("sse_broker_connected", broker="redis") == 1
    redis_server.stop()
    try:
        down = await asyncio.to_thread(
            eventually, read, lambda s: s.value("sse_listener_running", broker="redis") == 0
        )
        assert down.value("sse_broker_connected", broker="redis") == 0
    finally:
        redis_server.start()
    back = await asyncio.to_thread(
        eventually, read, lambda s: s.value("sse_listener_running", broker="redis") == 1, 20
    )
    assert back.value("sse_broker_connected", broker="redis") == 1
    reconnects = back.value("sse_broker_reconnects_total") - up.value("sse_broker_reconnects_total")
    assert reconnects >= 1


def _connections_per_process(directory: Path) -> dict[int, float]:
    """What each process wrote to its own file for ``sse_connections``."""
    found = {}
    for path in directory.glob("gauge_livesum_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "sse_connections":
                    found[pid] = sample.value
    return found


@pytest.mark.redis
async def test_two_workers_answer_as_one_and_a_dead_one_keeps_its_counts(
    server_factory: ServerFactory,
    redis_publisher: Broker,
    make_user: MakeUser,
    make_session: MakeSession,
    tmp_path: Path,
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = server_factory(
        "redis",
        sse={"METRICS_TOKEN": METRICS_TOKEN},
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
        name="metrics-2w",
        workers=2,
    )
    user, token = make_user()
    sids = [make_session(user).session_id for _ in range(3)]

    def read() -> Scrape:
        return scrape(server.base_url, METRICS_TOKEN)

    streams = []
    try:
        # Until both workers hold some: the kernel hands each connection to either.
        while len([n for n in _connections_per_process(directory).values() if n]) < 2:
            assert len(streams) < 24, _connections_per_process(directory)
            batch = [await open_stream(events_url(server.base_url, sid, token)) for sid in sids]
            for stream in batch:
                await until_connected(stream)
            streams += batch
            await asyncio.sleep(1.2)  # each worker writes its gauge once a second
        total = len(streams)
        per_process = _connections_per_process(directory)
        assert sum(per_process.values()) == total
        # Each worker alone knows fewer; any of them answers with the sum.
        for _ in range(8):
            found = await asyncio.to_thread(read)
            assert found.value("sse_connections") == total
            assert found.value("sse_stream_opens_total", status="200") == total
            assert found.value("sse_listener_running", broker="redis") == 1

        for sid in sids:
            for n in range(2):
                redis_publisher.publish(sid, prepare(sid, "tool_status", {"n": n}))
        for stream in streams:
            assert len(await collect_types(stream, 2)) == 2
        delivered = await asyncio.to_thread(
            eventually, read, lambda s: s.value("sse_events_delivered_total") == 2 * total
        )
        assert delivered.value("sse_events_delivered_total") == 2 * total

        # A worker dies (killed: no chance to say so): its streams are no
        # longer counted as open, and what it delivered still counts.
        victim, held = max(_connections_per_process(directory).items(), key=lambda kv: kv[1])
        os.kill(victim, signal.SIGKILL)
        await asyncio.to_thread(
            eventually, read, lambda s: s.value("sse_connections") == total - held, 5
        )
        for _ in range(4):
            found = await asyncio.to_thread(read)
            assert found.value("sse_connections") == total - held
            assert found.value("sse_events_delivered_total") == 2 * total
            assert found.value("sse_stream_opens_total", status="200") == total
        assert victim not in _connections_per_process(directory)
    finally:
        for stream in streams:
            await stream.aclose()
