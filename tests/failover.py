"""What the failover tests share: a client that follows a stream as
EventSource does, a publisher that keeps publishing through an outage,
and the check that nothing was lost silently."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sse._stream.events import parse_id, prepare
from sse._transport import Broker
from sse.exceptions import BrokerUnavailable
from sse.testing import StreamEnded, open_stream
from tests.servers import ROOT, database_url
from tests.topologies import Node


@dataclass
class Follower:
    """Reads a session's stream and, whenever it ends or breaks, opens it
    again with ``Last-Event-ID`` after ``retry`` seconds.  ``log`` holds
    what arrived in order: ``("event", id)`` and ``("gap", data)``."""

    url: str
    retry: float = 0.2
    log: list[tuple[str, Any]] = field(default_factory=list)
    streams: int = 0
    last_event_id: str | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> Follower:
        self._task = asyncio.get_running_loop().create_task(self._follow())
        return self

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    @property
    def ids(self) -> list[str]:
        return [value for kind, value in self.log if kind == "event"]

    @property
    def gaps(self) -> list[dict[str, Any]]:
        return [value for kind, value in self.log if kind == "gap"]

    async def until(self, event_id: str, timeout: float = 30) -> None:
        """Wait until ``event_id`` (or a later one) arrived."""
        key = parse_id(event_id)
        deadline = time.monotonic() + timeout
        while not any(parse_id(i) >= key for i in self.ids):  # type: ignore[operator]
            assert time.monotonic() < deadline, f"{event_id} never arrived: {self.log[-5:]}"
            await asyncio.sleep(0.05)

    async def _follow(self) -> None:
        while True:
            headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else None
            try:
                async with open_stream(self.url, headers=headers, timeout=10) as stream:
                    if stream.status_code != 200:
                        await asyncio.sleep(self.retry)
                        continue
                    self.streams += 1
                    while True:
                        event = await stream.next_event(timeout=60)
                        message = event.json()
                        if event.id is not None:
                            self.last_event_id = event.id
                        if message["type"] == "replay_gap":
                            self.log.append(("gap", message["data"]))
                        elif message["type"] not in ("connected", "heartbeat"):
                            self.log.append(("event", message["id"]))
            except (StreamEnded, TimeoutError, OSError):
                pass
            except Exception as exc:  # httpx errors while the server is busy
                if type(exc).__module__.split(".")[0] not in ("httpx", "httpcore"):
                    raise
            await asyncio.sleep(self.retry)


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def assert_no_silent_hole(log: list[tuple[str, Any]], accepted: list[str]) -> None:
    """Every accepted event from the first that arrived (the stream opened
    without a ``Last-Event-ID``) arrived, or a replay_gap came after the
    last event before it arrived and before the first event after it did.
    (A replay after a gap may repeat events; they are not holes.)"""
    first = next((parse_id(value) for kind, value in log if kind == "event"), None)
    assert first is not None, f"nothing arrived: {log}"
    accepted = [i for i in accepted if parse_id(i) >= first]  # type: ignore[operator]
    position: dict[str, int] = {}
    for index, (kind, value) in enumerate(log):
        if kind == "event":
            position.setdefault(value, index)
    gaps = [index for index, (kind, _) in enumerate(log) if kind == "gap"]
    keys = sorted(accepted, key=lambda i: parse_id(i))  # type: ignore[arg-type, return-value]
    for n, event_id in enumerate(keys):
        if event_id in position:
            continue
        before = max((position[i] for i in keys[:n] if i in position), default=-1)
        after = min((position[i] for i in keys[n + 1 :] if i in position), default=len(log))
        assert any(before < gap < after for gap in gaps), (
            f"{event_id} was accepted, never delivered, and no replay_gap says so: {log}"
        )


class Publisher:
    """Publishes an event every ``interval`` seconds from a thread, through
    outages: ``accepted`` are the ids Redis returned, ``refused`` counts
    the publishes that failed (BrokerUnavailable)."""

    def __init__(self, broker: Broker, session_id: str, interval: float = 0.01) -> None:
        self.broker = broker
        self.session_id = session_id
        self.interval = interval
        self.accepted: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = prepare(self.session_id, "tool_status", {"n": n})
            try:
                self.accepted.append(self.broker.publish(self.session_id, body))
            except BrokerUnavailable:
                self.refused += 1
            time.sleep(self.interval)


def publish_when_possible(broker: Broker, session_id: str, data: Any, timeout: float = 30) -> str:
    """Publish once the broker takes it (after a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return broker.publish(session_id, prepare(session_id, "tool_status", data))
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def replicated(primary: Node) -> None:
    """Every write so far has reached ``primary``'s replica."""
    with primary.client() as client:
        assert client.execute_command("WAIT", 1, 5000) == 1


def cut_replication(replica: Node) -> None:
    """The replica drops its link to its primary and cannot make a new one
    (it sends a password the primary does not have) until ``mend``: what
    the primary accepts from now on, the replica never gets."""
    with replica.client() as client:
        client.config_set("masterauth", "not-the-password")
        client.client_kill_filter(_type="master")


def mend(replica: Node) -> None:
    with replica.client() as client:
        client.config_set("masterauth", "")


def start_agent(session_id: str, redis_url: str) -> subprocess.Popen[str]:
    """``manage.py request_permission`` in a process of its own, waiting up to 60 s."""
    from django.db import connection

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SSE_OVERRIDES"}
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": redis_url,
        "PYTHONUNBUFFERED": "1",
    }
    argv = [sys.executable, "manage.py", "request_permission", session_id, "deploy", "{}"]
    return subprocess.Popen(
        [*argv, "--timeout", "60"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def assert_failover_gaps(
    url: str,
    publisher: Broker,
    session_id: str,
    follower: Follower,
    kept: list[str],
    lost: list[str],
) -> str:
    """After a failover to a primary that has ``kept`` but not ``lost``: a
    client at ``kept[-1]`` gets replay_gap before the new primary stored
    anything of the session and after, the follower (which saw ``lost``
    live) was told of a gap, and nothing arrived silently out of order.
    Stops the follower; returns the id of the event published after."""
    from sse.testing import open_stream
    from tests.streaming import collect_types, until_connected

    try:
        # Before the new primary stored any event of the session: every
        # position may be missing what the old one accepted last.
        async with open_stream(url, headers={"Last-Event-ID": kept[-1]}) as early:
            await until_connected(early)
            [early_gap] = await collect_types(early, 1, "replay_gap")
        assert early_gap.json()["data"] == {"missed_from": kept[-1], "resumed_at": None}
        after = await asyncio.to_thread(
            publish_when_possible, publisher, session_id, {"n": len(kept) + len(lost) + 1}
        )
        await follower.until(after)
        async with open_stream(url, headers={"Last-Event-ID": kept[-1]}) as late:
            await until_connected(late)
            gap = await collect_types(late, 1, "replay_gap")
            [replayed] = await collect_types(late, 1)
    finally:
        await follower.stop()
    assert gap[0].json()["data"]["missed_from"] == kept[-1]
    assert replayed.id == after
    assert follower.gaps, follower.log
    assert_no_silent_hole(follower.log, [*kept, *lost, after])
    return after
