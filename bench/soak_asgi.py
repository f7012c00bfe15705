"""The project's application behind a probe for the soak (bench/soak.py):
``GET /_soak/figures`` answers, from inside the serving event loop, what
``/proc`` cannot tell: the loop's task count, the collector's counts and the
open streams.  Every other request goes to the project unchanged.

The task count swings: every 10 s the lease renewal (``sse._stream.leases``)
holds one task per stream for as long as Redis takes to answer them all.  So
a sampler counts the tasks every ``EVERY`` seconds, and the probe gives the
fewest and the most since its previous answer as well as the count now.
``all_tasks()`` walks every Task object still referenced, finished or not:
with a leak of tasks each count costs more (at 0.5 s, 30 minutes into the
first soak, the sampler took a third of the loop's busy time), hence 2 s.
``tasks_alive`` is that number: Task objects that are referenced, done or not.

For hunting a leak: ``SOAK_TRACEMALLOC=<frames>`` starts tracemalloc at
import, and ``GET /_soak/figures?top=20`` then adds the 20 biggest
allocation sites by line and the growth since the previous ``top`` request;
``?garbage=20`` gives the frozen generation back to the collector, runs it
once in full and names the 20 commonest kinds of garbage it found;
``?census=20`` does the same collection, then counts what lives on by kind
and names the 20 kinds that grew most since the previous census.  Both are a
full pause, and freeze what lives on again, as ``sse._process.gc_freeze``
would.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import tracemalloc
import types
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

if os.environ.get("SOAK_TRACEMALLOC"):
    tracemalloc.start(int(os.environ["SOAK_TRACEMALLOC"]))

from agent_backend.asgi import application as project

EVERY = 2.0
_snapshot: tracemalloc.Snapshot | None = None
_sampler: asyncio.Task[None] | None = None
_range: dict[str, list[int]] = {}
_previous: Counter[str] | None = None


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
        # asyncio's registry of tasks (a WeakSet): finished ones stay until freed.
        "tasks_alive": len(getattr(asyncio.tasks, "_all_tasks", ())),
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
    gc.freeze()
    return {"garbage": found, "garbage_kinds": dict(kinds.most_common(n))}


def _census(n: int) -> dict[str, Any]:
    global _previous
    gc.unfreeze()
    gc.collect()
    alive = Counter(_name(o) for o in gc.get_objects())
    gc.freeze()
    out: dict[str, Any] = {"census": alive.total()}
    if _previous is not None:
        grew = alive.copy()
        grew.subtract(_previous)
        out["census_growth"] = dict(grew.most_common(n))
    _previous = alive
    return out


_NAMED = (
    types.CoroutineType,
    types.GeneratorType,
    types.AsyncGeneratorType,
    types.FunctionType,
    types.MethodType,
)


def _name(o: object) -> str:
    kind = type(o)
    name = f"{kind.__module__}.{kind.__qualname__}"
    # By type alone: isinstance() would ask a dead weak proxy for its class.
    if kind is types.FrameType:
        name += f" {o.f_code.co_qualname}"  # type: ignore[attr-defined]
    elif kind in _NAMED:
        name += f" {o.__qualname__}"  # type: ignore[attr-defined]
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
        census = int(query.get("census", ["0"])[0])
        out = figures(top)
        if garbage:
            out.update(_garbage(garbage))
        if census:
            out.update(_census(census))
        body = json.dumps(out).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await project(scope, receive, send)
