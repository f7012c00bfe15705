"""A closed stream leaves nothing behind: its connection, response and
task are freed (a soak run once found every closed stream kept alive)."""

from __future__ import annotations

import asyncio
import gc
import time

from sse._stream.queue import Connection
from tests.conftest import MakeSession, MakeUser
from tests.streaming import MakeStack, until_connected


def _connections(session_id: str) -> int:
    gc.collect()
    # type(), not isinstance(): the latter would touch dead weak proxies.
    return sum(1 for o in gc.get_objects() if type(o) is Connection and o.session_id == session_id)


async def test_closed_streams_are_freed(
    make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession
) -> None:
    stack = make_stack("memory", MAX_CONNECTIONS_PER_SESSION=50)  # the server is in this process
    user, token = make_user()
    sid = make_session(user).session_id
    for _ in range(3):
        async with stack.open(sid, token) as stream:
            await until_connected(stream)
            await stack.apublish(sid, "tool_status", {"n": 1})
    assert stack.server is not None
    deadline = time.monotonic() + 10
    # The server ends each response once its client has gone.
    while (alive := await asyncio.to_thread(_connections, sid)) > 0:
        assert time.monotonic() < deadline, f"{alive} closed streams are still in memory"
        await asyncio.sleep(0.2)
