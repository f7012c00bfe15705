"""``database_sync_to_async``: sync ORM work from the loop on a fixed set of threads."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from sse import database_sync_to_async

# Each call closes the connections its thread left behind: database access.
pytestmark = pytest.mark.django_db(transaction=True)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def _where(label: str) -> tuple[str, str, str]:
    return label, threading.current_thread().name, request_id.get()


async def test_the_call_runs_on_a_worker_thread_with_the_callers_context() -> None:
    request_id.set("r-42")
    label, thread, seen = await database_sync_to_async(_where)("x")
    assert label == "x"
    assert thread.startswith("sse-db-")
    assert seen == "r-42"


async def test_an_exception_reaches_the_caller_and_the_workers_keep_working() -> None:
    def fail() -> None:
        raise LookupError("no such session")

    with pytest.raises(LookupError, match="no such session"):
        await database_sync_to_async(fail)()
    assert (await database_sync_to_async(_where)("after"))[0] == "after"


async def test_a_stop_iteration_arrives_as_a_runtime_error() -> None:
    def exhausted() -> None:
        next(iter(()))

    with pytest.raises(RuntimeError, match="StopIteration raised by a database call"):
        await asyncio.wait_for(database_sync_to_async(exhausted)(), 5)


async def test_a_caller_that_gives_up_does_not_block_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "late"

    task = asyncio.create_task(database_sync_to_async(slow)())
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Another call is served meanwhile, by another thread.
    assert (await asyncio.wait_for(database_sync_to_async(_where)("other"), 5))[0] == "other"
    release.set()
    await asyncio.sleep(0.05)
    assert "Exception in callback" not in caplog.text  # the late result is dropped
