"""The Python work of delivering one event, in one process, without sockets:
``StreamHub.deliver`` -> each stream's queue -> its ``_stream`` generator's
chunk -> ``sse.asgi``'s response loop -> the server's ``send`` (here one
that counts), one task per stream as a server runs it.

Where CPU seconds are too noisy to compare (a busy machine), count
instructions instead: they do not depend on what else runs.  The
difference of two runs, 20 rounds and 0, divided by 20 x STREAMS, is the
instructions per delivered event::

    export PYTHONPATH=. DJANGO_SETTINGS_MODULE=tests.settings PYTHONHASHSEED=0 STREAMS=500
    for rounds in 0 20; do
      ROUNDS=$rounds valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$rounds \\
        .venv/bin/python bench/hotpath.py
    done   # compare the "I refs" lines

Without valgrind it prints the CPU time per event.  The collector is
frozen and off while it measures: its passes would otherwise land in one
run and not the other.
"""

# ruff: noqa: T201 -- a command-line tool: its output is printed
from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import django

django.setup()

from sse._http.stream import EventStreamResponse, _stream  # noqa: E402
from sse._stream.events import render  # noqa: E402
from sse._stream.hub import StreamHub  # noqa: E402
from sse._stream.queue import Connection  # noqa: E402
from sse.asgi import ASGIHandler  # noqa: E402

STREAMS = int(os.environ.get("STREAMS", 2000))
ROUNDS = int(os.environ.get("ROUNDS", 60))
WARMUP = 2
BODY = b'"type":"tool_status","session_id":"s","data":{"n":1}'


async def main() -> float:
    loop = asyncio.get_running_loop()
    hub = StreamHub(None)  # the in-process broker: nothing but the fan-out
    written = 0

    handler = ASGIHandler()

    async def send(message: dict[str, Any]) -> None:
        nonlocal written
        written += 1 if message.get("body", b"").startswith(b"id: ") else 0

    async def serve(stream: AsyncIterator[bytes]) -> None:
        await handler.send_response(EventStreamResponse(stream), send)

    tasks = []
    for i in range(STREAMS):
        conn = Connection(f"s{i}", 100, loop)
        await hub.attach(conn)
        conn.go_live((0, 0))
        stream = _stream(hub, conn, b"", None, (0, 0), time.time() + 3600)
        tasks.append(asyncio.ensure_future(serve(stream)))
    await asyncio.sleep(0.1)
    gc.collect()
    gc.freeze()
    gc.disable()
    start = 0.0
    for r in range(WARMUP + ROUNDS):
        if r == WARMUP:
            start = time.process_time()
        event = render(b"%d-0" % (r + 1), BODY)
        for i in range(STREAMS):
            hub.deliver(loop, f"s{i}", [event])
        for _ in range(3):
            await asyncio.sleep(0)
    elapsed = time.process_time() - start
    assert written == STREAMS * (WARMUP + ROUNDS), (written, STREAMS * (WARMUP + ROUNDS))
    for task in tasks:
        task.cancel()
    return elapsed / max(1, ROUNDS * STREAMS) * 1e6


if __name__ == "__main__":
    print(f"{asyncio.run(main()):.3f} µs of CPU per delivered event")
