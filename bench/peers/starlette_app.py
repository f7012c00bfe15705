"""The sse-starlette peer: what a user of sse-starlette + Redis pub/sub writes.

One Redis pub/sub connection per process (the efficient way; with
``STARLETTE_PUBSUB=per-connection`` each stream opens its own, as in most
tutorials).  A session's channel is ``sse_events:<session_id>``; each stream
has a bounded queue.  Plain pub/sub has no buffer, so there is no
Last-Event-ID replay.

    uvicorn bench.peers.starlette_app:app --loop uvloop --http httptools
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PER_CONNECTION = os.environ.get("STARLETTE_PUBSUB") == "per-connection"
QUEUE_SIZE = 100


class Fanout:
    """One pub/sub connection; messages go to the queues of local streams."""

    def __init__(self) -> None:
        self.redis = aioredis.Redis.from_url(REDIS_URL)
        self.pubsub = self.redis.pubsub()
        self.queues: dict[bytes, set[asyncio.Queue[bytes]]] = {}
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    async def add(self, channel: bytes, queue: asyncio.Queue[bytes]) -> None:
        async with self.lock:
            queues = self.queues.get(channel)
            if queues is None:
                self.queues[channel] = {queue}
                await self.pubsub.subscribe(channel)
            else:
                queues.add(queue)
            if self.task is None:
                self.task = asyncio.create_task(self.run())

    async def remove(self, channel: bytes, queue: asyncio.Queue[bytes]) -> None:
        async with self.lock:
            queues = self.queues.get(channel)
            if queues is None:
                return
            queues.discard(queue)
            if not queues:
                del self.queues[channel]
                await self.pubsub.unsubscribe(channel)

    async def run(self) -> None:
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            for queue in tuple(self.queues.get(message["channel"], ())):
                # A slow client loses events: plain pub/sub has no replay.
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(message["data"])


fanout: Fanout | None = None


async def events(request: Request) -> Response:
    global fanout
    session_id = request.path_params["session_id"]
    channel = b"sse_events:" + session_id.encode()
    queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
    if PER_CONNECTION:
        client = aioredis.Redis.from_url(REDIS_URL)
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)

        async def stream_own() -> AsyncIterator[dict[str, str]]:
            try:
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        yield {"data": message["data"].decode()}
            finally:
                await pubsub.aclose()
                await client.aclose()

        return EventSourceResponse(stream_own(), ping=15)
    if fanout is None:
        fanout = Fanout()
    hub = fanout
    await hub.add(channel, queue)

    async def stream() -> AsyncIterator[dict[str, str]]:
        try:
            while True:
                data = await queue.get()
                yield {"data": data.decode()}
        finally:
            await hub.remove(channel, queue)

    return EventSourceResponse(stream(), ping=15)


app = Starlette(routes=[Route("/events/{session_id}", events)])
