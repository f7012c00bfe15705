"""ORM work from async code without tying up a thread per stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import SyncToAsync, sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def database_sync_to_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run ``func`` in the shared thread pool, as channels' helper of the
    same name does, closing the connections it leaves behind.

    Not thread-sensitive: Django would otherwise run it in the request's own
    thread, which lives as long as the response; for a stream, hours.  And a
    sync caller may be blocking that thread while it waits for us.
    """

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)


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
