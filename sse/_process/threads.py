"""Blocking work from async code: ORM queries and sync Redis publishes, on
one fixed set of threads, without tying up a thread per stream.

The threads the apps use, and why each exists:

- these workers (``THREADS``, as many as the loop's default executor would
  have): a stream makes up to two blocking calls when it opens (its
  authorisation query, unless ``sse.asgi`` ran it on the request's thread;
  its backlog query) and a reconnect storm opens thousands at once;
  a call here is one queue put and one ``call_soon_threadsafe``, where
  asgiref's ``sync_to_async`` costs several futures and a context switch
  dance per call.
- ``sse.asgi``'s fixed set of request threads (optional, the host's
  choice; 4 unless it says otherwise): Django starts a thread per request
  otherwise (bench/RESULTS.md, third run: a storm of 2,000 reconnects took
  a third longer).  They are
  ``Workers`` of one thread each, so the apps' own hops to them
  (``request_thread_call``) skip asgiref's executor machinery.
- the loop's default executor: publishing from async code
  (``notifier.asend``) runs the sync Redis client there, because redis-py's
  asyncio pool fails the first command after a Redis restart and a publish
  must not be retried; under Sentinel, the listener asks the sentinels for
  the primary there too (redis-py's ``discover_master`` is sync), once per
  connection.
- ``permissions``' waiting loop: sync callers of ``request_permission``
  (Celery tasks, commands) wait on one event loop per process instead of
  one per call, so the broker keeps one listener for all of them.
- ``permissions``' resender (``permissions-resend``, one thread, started on
  the first refused publish): a decision whose ``permission_cleared`` the
  broker refused is published again from there until it is accepted, off
  the request that decided it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import queue
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync, _restore_context, sync_to_async
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
        return await _workers.call(functools.partial(context.run, run, *args, **kwargs))

    return functools.wraps(func)(call)


class Workers(Executor):
    """Threads taking jobs from one queue.  From async code, ``call(job)``
    is one queue put and, for the result, one ``call_soon_threadsafe``; as
    an ``Executor`` (what asgiref's ``sync_to_async`` hands work to) they
    run ``submit``'s calls on the same threads, in turn."""

    def __init__(self, size: int, name: str, doing: str) -> None:
        self.size = size
        self.name = name
        self.doing = doing  # for the errors: "a database call"
        self._jobs: queue.SimpleQueue[tuple[Any, Any, Any]] = queue.SimpleQueue()
        self._started = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def call(self, job: Callable[[], R]) -> asyncio.Future[R]:
        """``job()`` on a thread; a job whose future was cancelled before its
        turn does not run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._put((loop, future, job))
        return future

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        future: Future[R] = Future()
        self._put((None, future, functools.partial(fn, *args, **kwargs)))
        return future

    def _put(self, item: tuple[Any, Any, Any]) -> None:
        if self._started < self.size or self._pid != os.getpid():
            self._start()
        self._jobs.put(item)

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked process: no threads came along
                self._pid, self._started = os.getpid(), 0
                self._jobs = queue.SimpleQueue()
            while self._started < self.size:
                self._started += 1
                name = f"{self.name}-{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            loop, future, job = self._jobs.get()
            if loop is None:  # submit(): a concurrent.futures.Future
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(job())
                    except BaseException as exc:  # as ThreadPoolExecutor
                        future.set_exception(exc)
            elif not future.cancelled():
                outcome: Callable[[asyncio.Future[Any], Any], None]
                try:
                    outcome, value = _succeed, job()
                except BaseException as exc:  # as concurrent.futures: the caller gets it
                    outcome, value = _fail, _carriable(exc, self.doing)
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                    loop.call_soon_threadsafe(outcome, future, value)
                del value
            del loop, future, job  # nothing of a job outlives it


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have been cancelled
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _carriable(exc: BaseException, doing: str) -> BaseException:
    if not isinstance(exc, StopIteration):
        return exc
    # A future cannot carry one, as in a coroutine.
    error = RuntimeError(f"{exc.__class__.__name__} raised by {doing}")
    error.__cause__ = exc
    return error


_workers = Workers(THREADS, "sse-db", "a database call")


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


# Sync calls a request owes its thread: made there first thing in the
# request's next ``request_thread_call``, in the same hop (``sse.asgi``
# defers the ``request_started`` receivers to the middleware's first hop).
_owed: contextvars.ContextVar[list[Callable[[], Any]] | None] = contextvars.ContextVar(
    "sse_owed_to_request_thread", default=None
)


def owe_request_thread(call: Callable[[], Any]) -> None:
    """Make ``call()`` on the request's thread before the function of the
    next ``request_thread_call`` of this context (and of the tasks it starts
    from now on), in the same hop."""
    owed = _owed.get()
    if owed is None:
        _owed.set([call])
    else:
        owed.append(call)


def owes_request_thread() -> bool:
    return bool(_owed.get())


def _pay_owed(func: Callable[P, R]) -> Callable[P, R]:
    """``func``, preceded by what the request owes its thread, if anything."""
    owed = _owed.get()
    if not owed:
        return func
    calls = owed[:]
    owed.clear()

    def paid(*args: P.args, **kwargs: P.kwargs) -> R:
        for call in calls:
            call()
        return func(*args, **kwargs)

    return paid


def on_request_thread(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``func`` as a coroutine function whose calls are ``request_thread_call``'s."""

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return await request_thread_call(func, *args, **kwargs)

    return functools.wraps(func)(call)


async def request_thread_call(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``sync_to_async(func, thread_sensitive=True)(*args, **kwargs)``:
    ``func`` on the request's thread, with the caller's context variables,
    and their changes back (a ``process_request`` that activates a language).

    When that thread is one of ``sse.asgi``'s (``Workers``), the call is one
    queue put instead of asgiref's executor future, its asyncio wrapper and
    a shield: 64 µs of CPU a call instead of 133 (a no-op, uvloop, one
    core), and a stream makes four such calls (the middleware's three, the
    first with its request's start and the second with its authorisation;
    its end).  What asgiref sets up for the thread is set
    up the same way, so an ``async_to_sync`` in ``func`` runs its coroutine
    on the caller's loop, as it would there.  Anywhere else, asgiref's.
    """
    func = _pay_owed(func)
    workers = _request_workers()
    if workers is None:
        return await sync_to_async(func, thread_sensitive=True)(*args, **kwargs)
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    raised = sys.exc_info()[1]
    tasks: list[asyncio.Task[Any]] = []  # those an async_to_sync in func starts

    def run() -> R:
        _restore_context(context)
        return func(*args, **kwargs)

    def job() -> R:
        local = SyncToAsync.threadlocal
        local.main_event_loop, local.main_event_loop_pid = loop, os.getpid()
        local.task_context = tasks
        if raised is None:
            return context.run(run)
        try:  # as asgiref: func sees the exception being handled
            raise raised
        except BaseException:
            return context.run(run)

    try:
        return await workers.call(job)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        raise
    finally:
        _restore_context(context)


def _request_workers() -> Workers | None:
    """The thread asgiref would run the request's thread-sensitive code on,
    if it is one of ours."""
    if getattr(AsyncToSync.executors, "current", None) is not None:
        return None  # inside an async_to_sync: its own thread
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_exited", False):
        return None
    executor = SyncToAsync.context_to_thread_executor.get(context)
    return executor if isinstance(executor, Workers) else None
