"""The project's application behind a probe for the soak (bench/soak.py):
``GET /_soak/figures`` answers, from inside the serving event loop, what
``/proc`` cannot tell: the loop's task count, the collector's counts and the
open streams.  Every other request goes to the project unchanged.

The task count swings: every 10 s the lease renewal (``sse._stream.leases``)
holds one task per stream for as long as Redis takes to answer them all.  So
a sampler counts the tasks every ``EVERY`` seconds, and the probe gives the
fewest and the most since its previous answer as well as the count now.

For hunting a leak: ``SOAK_TRACEMALLOC=<frames>`` starts tracemalloc at
import, and ``GET /_soak/figures?top=20`` then adds the 20 biggest
allocation sites by line and the growth since the previous ``top`` request;
``?garbage=20`` gives the frozen generation back to the collector, runs it
once in full and names the 20 commonest kinds of garbage it found (a full
pause, and the frozen objects that live on stay unfrozen until the next
freeze).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import tracemalloc
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

if os.environ.get("SOAK_TRACEMALLOC"):
    tracemalloc.start(int(os.environ["SOAK_TRACEMALLOC"]))

from agent_backend.asgi import application as project

EVERY = 0.5
_snapshot: tracemalloc.Snapshot | None = None
_sampler: asyncio.Task[None] | None = None
_range: dict[str, list[int]] = {}


async def _sample() -> None:
    from sse._stream.hub import get_hub

    hub = get_hub()
    while True:
        for key, value in (
            ("tasks", len(asyncio.all_tasks())),
            ("streams", hub.connection_count()),
        ):
            low, high = _range.setdefault(key, [value, value])
            _range[key] = [min(low, value), max(high, value)]
        await asyncio.sleep(EVERY)


def figures(top: int) -> dict[str, Any]:
    global _sampler
    from sse._stream.hub import get_hub

    if _sampler is None:
        _sampler = asyncio.get_running_loop().create_task(_sample())
    tasks = asyncio.all_tasks()
    out: dict[str, Any] = {
        "pid": os.getpid(),
        "tasks": len(tasks),
        "streams": get_hub().connection_count(),
        "threads": threading.active_count(),
        "gc_counts": gc.get_count(),
        "gc_collections": [s["collections"] for s in gc.get_stats()],
        # Tracked objects outside the permanent generation, and in it
        # (sse._process.gc_freeze moves the long-lived ones there).
        "gc_objects": len(gc.get_objects()),
        "gc_frozen": gc.get_freeze_count(),
        "task_kinds": dict(Counter(_kind(t) for t in tasks).most_common(8)),
    }
    for key, (low, high) in _range.items():
        out[f"{key}_min"], out[f"{key}_max"] = low, high
    _range.clear()
    if top and tracemalloc.is_tracing():
        out["tracemalloc"] = _top(top)
    return out


def _kind(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)


def _garbage(n: int) -> dict[str, Any]:
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
    finally:
        gc.set_debug(0)
    kinds = Counter(_name(o) for o in gc.garbage)
    found = len(gc.garbage)
    gc.garbage.clear()
    gc.collect()
    return {"garbage": found, "garbage_kinds": dict(kinds.most_common(n))}


def _name(o: object) -> str:
    kind = type(o)
    name = f"{kind.__module__}.{kind.__qualname__}"
    code = getattr(o, "f_code", None) or getattr(o, "cr_code", None) or getattr(o, "ag_code", None)
    if code is not None:
        name += f" {code.co_qualname}"
    elif callable(o) and hasattr(o, "__qualname__"):
        name += f" {o.__qualname__}"
    return name


def _top(n: int) -> dict[str, Any]:
    global _snapshot
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    stats = snapshot.statistics("lineno")
    out: dict[str, Any] = {
        "traced_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 2),
        "top": [f"{s.size / 1024:.0f} KiB {s.count} {s.traceback}" for s in stats[:n]],
    }
    if _snapshot is not None:
        diff = snapshot.compare_to(_snapshot, "lineno")
        out["growth"] = [
            f"{d.size_diff / 1024:+.0f} KiB {d.count_diff:+d} {d.traceback}" for d in diff[:n]
        ]
    _snapshot = snapshot
    return out


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/_soak/figures":
        query = parse_qs(scope.get("query_string", b"").decode())
        top = int(query.get("top", ["0"])[0])
        garbage = int(query.get("garbage", ["0"])[0])
        body = json.dumps({**figures(top), **(_garbage(garbage) if garbage else {})}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await project(scope, receive, send)
