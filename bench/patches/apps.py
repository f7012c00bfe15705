from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.apps import AppConfig


class PatchesConfig(AppConfig):
    name = "bench.patches"
    label = "bench_patches"

    def ready(self) -> None:
        wanted = set(filter(None, os.environ.get("BENCH_PATCHES", "").split(",")))
        if "gcstats" in wanted:
            gc_stats(os.environ.get("BENCH_GC_LOG", "/tmp/bench-gc.jsonl"))
        if "stalls" in wanted:
            from sse._http import stream

            path = os.environ.get("BENCH_STALL_LOG", "/tmp/bench-stalls.jsonl")
            get_hub = stream.get_hub

            def watching_get_hub() -> Any:  # the first stream's open starts the watch
                watch_stalls(asyncio.get_running_loop(), path)
                stream.get_hub = get_hub  # type: ignore[attr-defined]
                return get_hub()

            stream.get_hub = watching_get_hub  # type: ignore[attr-defined]


def gc_stats(path: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 -- lives as long as the process
    started: list[int] = [0]
    by: list[str] = [""]
    young = {"t": time.time(), "gen0": 0, "gen1": 0, "young_ms": 0.0}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter_ns()
            if info.get("generation") == 2:
                # Who started it: gc.collect() or an allocation (the collector's own)
                by[0] = _stack_line(traceback.extract_stack()[-6:-1])
            return
        if info.get("generation") != 2:
            young[f"gen{info.get('generation')}"] += 1
            young["young_ms"] += (time.perf_counter_ns() - started[0]) / 1e6
            if time.time() - young["t"] >= 1.0:
                young["young_ms"] = round(young["young_ms"], 2)
                out.write(json.dumps(young) + "\n")
                young.update(t=time.time(), gen0=0, gen1=0, young_ms=0.0)
            return
        out.write(
            json.dumps(
                {
                    "ms": round((time.perf_counter_ns() - started[0]) / 1e6, 2),
                    "collected": info.get("collected"),
                    "tracked": len(gc.get_objects(2)),
                    "frozen": gc.get_freeze_count(),
                    "t": time.time(),
                    "by": by[0],
                }
            )
            + "\n"
        )

    gc.callbacks.append(callback)


def _stack_line(frames: Iterable[traceback.FrameSummary]) -> str:
    """``file:line:function`` of each frame, outermost first."""
    return " > ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in frames)


STALL_MS = 10.0
TICK_S = 0.002


def watch_stalls(loop: asyncio.AbstractEventLoop, path: str) -> None:
    """A ticker on ``loop`` every 2 ms and a thread that samples the loop's
    thread whenever the ticker is 10 ms late; runs on ``loop``."""
    out = open(path, "a", buffering=1)  # noqa: SIM115 -- lives as long as the process
    ident = threading.get_ident()
    last = [time.perf_counter()]

    def tick() -> None:
        last[0] = time.perf_counter()
        loop.call_later(TICK_S, tick)

    def sample() -> str:
        frame = sys._current_frames().get(ident)
        if frame is None:
            return "?"
        return _stack_line(traceback.extract_stack(frame)[-12:])

    def watch() -> None:
        while True:
            time.sleep(TICK_S)
            behind = (time.perf_counter() - last[0]) * 1000
            if behind < STALL_MS:
                continue
            began = last[0]
            stacks: dict[str, int] = {}
            while last[0] == began:
                key = sample()
                stacks[key] = stacks.get(key, 0) + 1
                time.sleep(TICK_S)
            ms = (last[0] - began) * 1000
            top = sorted(stacks.items(), key=lambda kv: -kv[1])[:3]
            out.write(json.dumps({"t": time.time(), "ms": round(ms, 1), "stacks": top}) + "\n")

    tick()
    threading.Thread(target=watch, name="bench-stalls", daemon=True).start()
