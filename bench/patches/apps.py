from __future__ import annotations

import asyncio
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
        if "auth" in wanted:
            shared_pool_for_streams()
        if "executor" in wanted or "freeze" in wanted:
            wrap_stream(release="executor" in wanted, freeze="freeze" in wanted)


def gc_stats(path: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 -- lives as long as the process
    started: list[int] = [0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter_ns()
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


def shared_pool_for_streams() -> None:
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections

    import sse.streams as streams

    original = streams.sync_to_async

    def patched(func: Any, *args: Any, **kwargs: Any) -> Any:
        def released(*a: Any, **kw: Any) -> Any:
            close_old_connections()
            try:
                return func(*a, **kw)
            finally:
                close_old_connections()

        return sync_to_async(released, thread_sensitive=False)

    del original
    streams.sync_to_async = patched  # type: ignore[assignment]


def wrap_stream(release: bool, freeze: bool) -> None:
    from asgiref.sync import SyncToAsync

    import sse.streams as streams

    original = streams._stream
    pending = [0]

    def freeze_soon() -> None:
        pending[0] = 0
        gc.collect()
        gc.freeze()

    async def _stream(*args: Any) -> Any:
        if release:
            context = SyncToAsync.thread_sensitive_context.get(None)
            executor = SyncToAsync.context_to_thread_executor.pop(context, None)
            if executor is not None:
                executor.shutdown(wait=False)
        if freeze and not pending[0]:
            pending[0] = 1
            asyncio.get_running_loop().call_later(2.0, freeze_soon)
        async for chunk in original(*args):
            yield chunk

    streams._stream = _stream  # type: ignore[assignment]
