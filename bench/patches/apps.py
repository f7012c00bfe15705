from __future__ import annotations

import gc
import json
import os
import time
from typing import Any

from django.apps import AppConfig


class PatchesConfig(AppConfig):
    name = "bench.patches"
    label = "bench_patches"

    def ready(self) -> None:
        wanted = set(filter(None, os.environ.get("BENCH_PATCHES", "").split(",")))
        if "gcstats" in wanted:
            gc_stats(os.environ.get("BENCH_GC_LOG", "/tmp/bench-gc.jsonl"))


def gc_stats(path: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 -- lives as long as the process
    started: list[int] = [0]
    young = {"t": time.time(), "gen0": 0, "gen1": 0, "young_ms": 0.0}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter_ns()
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
                }
            )
            + "\n"
        )

    gc.callbacks.append(callback)
