"""Blocking work from async code: ORM queries and sync Redis publishes, on
one fixed set of threads, without tying up a thread per stream.

The threads the apps use, and why each exists:

- these workers (``THREADS``, as many as the loop's default executor would
  have): a stream makes two blocking calls when it opens (its authorisation
  query, its backlog query) and a reconnect storm opens thousands at once;
  a call here is one queue put and one ``call_soon_threadsafe``, where
  asgiref's ``sync_to_async`` costs several futures and a context switch
  dance per call.
- ``sse.asgi``'s fixed set of request threads (optional, the host's
  choice): Django starts a thread per request otherwise (bench/RESULTS.md,
  third run: a storm of 2,000 reconnects took a third longer).
- the loop's default executor: publishing from async code
  (``notifier.asend``) runs the sync Redis client there, because redis-py's
  asyncio pool fails the first command after a Redis restart and a publish
  must not be retried.
- ``permissions``' waiting loop: sync callers of ``request_permission``
  (Celery tasks, commands) wait on one event loop per process instead of
  one per call, so the broker keeps one listener for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")

# As many threads as the loop's default executor would have.
THREADS = min(32, (os.cpu_count() or 1) + 4)


def database_sync_to_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run ``func`` on one of a fixed set of threads, as channels' helper of
    the same name does, closing the connections it leaves behind.

    Not thread-sensitive: Django would otherwise run it in the request's own
    thread, which lives as long as the response; for a stream, hours.  And a
    sync caller may be blocking that thread while it waits for us.

    Not asgiref's ``sync_to_async`` either: a stream makes two such calls
    when it opens, and a reconnect storm opens thousands at once.  Here a
    call is one queue put, and its result one ``call_soon_threadsafe``; the
    caller's context variables are passed on, as asgiref does.
    """

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        context = contextvars.copy_context()
        return await _workers.submit(functools.partial(context.run, run, *args, **kwargs))

    return functools.wraps(func)(call)


class _Workers:
    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any]]
        self._jobs = queue.SimpleQueue()
        self._started = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], R]) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if self._started < self.size or self._pid != os.getpid():
            self._start()
        self._jobs.put((loop, future, job))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked process: no threads came along
                self._pid, self._started = os.getpid(), 0
                self._jobs = queue.SimpleQueue()
            while self._started < self.size:
                self._started += 1
                name = f"sse-db-{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            loop, future, job = self._jobs.get()
            outcome: Callable[[asyncio.Future[Any], Any], None]
            try:
                outcome, value = _succeed, job()
            except BaseException as exc:  # as concurrent.futures: the caller gets it
                outcome, value = _fail, exc
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(outcome, future, value)
            del loop, future, job, value  # nothing of a job outlives it


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have been cancelled
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, StopIteration):  # a future cannot carry one, as in a coroutine
        error = RuntimeError(f"{exc.__class__.__name__} raised by a database call")
        error.__cause__ = exc
        exc = error
    future.set_exception(exc)


_workers = _Workers(THREADS)


def release_request_thread() -> None:
    """Stop the worker thread Django keeps for this request's sync code.

    Django runs each ASGI request in an asgiref ``ThreadSensitiveContext``
    whose thread lives until the response ends.  A stream does no more sync
    work once it has started, and holding a thread per open stream costs
    memory the streams themselves do not.  Should a later call need the
    context's thread (closing the response), asgiref starts a new one.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    if context is None or executors is None or getattr(context, "_executor", None):
        return  # no context, or its thread is pooled (sse.asgi): nothing to release
    executor = executors.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)
