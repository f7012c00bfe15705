"""Backlog messages on (re)connect, with a probe that runs before the stream
subscribes: nothing published in between is lost."""

from __future__ import annotations

import pytest

from sse import BacklogMessage
from sse._stream import backlog
from sse._stream.events import prepare
from tests.conftest import MakeSession, MakeUser
from tests.streaming import MakeStack, until_connected


async def test_a_request_made_between_the_probe_and_the_subscription_is_shown(
    make_stack: MakeStack,
    make_user: MakeUser,
    make_session: MakeSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = make_stack("memory", HEARTBEAT_INTERVAL=1)
    user, token = make_user()
    sid = make_session(user).session_id
    monkeypatch.setattr(backlog, "_providers", {})
    published: list[str] = []

    def probe(session_id: str) -> bool:
        # The agent asks right after the probe looked: the probe saw no
        # row, and the request's event is published before the stream
        # subscribes, so a new tab (no Last-Event-ID) replays nothing.
        body = prepare(session_id, "permission_request", {"request_id": "r-1"})
        published.append(stack.broker.publish(session_id, body))
        return False

    def provider(session_id: str) -> list[BacklogMessage]:
        return [BacklogMessage("permission_request", {"request_id": "r-1"}, 0, published[0])]

    backlog.register(provider, probe=probe)
    async with stack.open(sid, token) as stream:
        await until_connected(stream)
        event = await stream.next_event(timeout=2)
    assert event.json()["type"] == "permission_request"
    assert event.json()["data"] == {"request_id": "r-1"}
