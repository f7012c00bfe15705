"""The event loop on which sync callers wait for a decision.

One loop in a daemon thread per process, rather than a loop per call
(``async_to_sync`` outside a server): the Redis broker keeps one listener
and one client per loop, so a Celery worker asking a thousand times keeps
one of each instead of a thousand.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# How long an interrupted caller waits for its request to be marked cancelled.
CANCEL_GRACE = 10.0
# How often a blocked caller wakes up to let signal handlers run.
SIGNAL_CHECK = 0.2

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid = 0


def _waiting_loop() -> asyncio.AbstractEventLoop:
    global _loop, _pid
    with _lock:
        # After a fork (Celery's prefork pool) the child has the loop but not its thread.
        if _loop is None or _pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="permissions-wait", daemon=True).start()
            _loop, _pid = loop, os.getpid()
        return _loop


def run_blocking(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work()`` on the waiting loop and block until it is done.

    If the caller is interrupted meanwhile (KeyboardInterrupt, SystemExit, a
    Celery time limit) the coroutine is cancelled and its cleanup awaited.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("this call blocks: from async code, await its async twin instead")
    finished = threading.Event()

    async def run() -> T:
        try:
            return await work()
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(run(), _waiting_loop())
    try:
        while True:
            # Wake up now and then: the kernel may hand SIGTERM/SIGINT to
            # another thread, and Python runs the handler only once the main
            # thread executes again; an endless wait would never run it.
            try:
                return future.result(timeout=SIGNAL_CHECK)
            except concurrent.futures.TimeoutError:
                if future.done():
                    raise  # the work itself timed out
    except BaseException:
        future.cancel()
        finished.wait(CANCEL_GRACE)
        raise
