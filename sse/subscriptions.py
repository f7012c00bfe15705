"""Server-side listening to a session, for code that waits on an event
(``permissions`` waits for the ``permission_cleared`` of its request)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._stream.events import check_session_id
from ._stream.hub import get_hub
from ._stream.queue import Connection

# Generous: a waiting agent reads its queue at once, and the bound only
# exists so a stuck waiter cannot grow without limit.
QUEUE_SIZE = 10_000


class Subscription:
    """Events of one session published after the subscription started."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, timeout: float) -> list[dict[str, Any]]:
        """The messages published since the last call, waiting up to
        ``timeout`` seconds for one; [] on timeout."""
        batch = await self._conn.get(timeout)
        if self._conn.ended is not None:
            raise ConnectionError(f"subscription ended: {self._conn.ended}")
        return [json.loads(event.frame.split(b"\ndata: ", 1)[1]) for event in batch or ()]


@asynccontextmanager
async def subscribe(session_id: str) -> AsyncIterator[Subscription]:
    """``async with subscribe(sid) as sub:`` — live once the block starts."""
    check_session_id(session_id)
    hub = get_hub()
    conn = Connection(session_id, QUEUE_SIZE, asyncio.get_running_loop(), counted=False)
    await hub.attach(conn)
    try:
        yield Subscription(conn)
    finally:
        hub.detach(conn)
