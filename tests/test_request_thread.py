"""``on_request_thread``: a request's sync code on its pooled thread
(``sse.asgi``), behaving as asgiref's ``sync_to_async(thread_sensitive=True)``."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from asgiref.local import Local
from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async
from django.utils import translation

from sse._process.threads import Workers, on_request_thread

step: contextvars.ContextVar[str] = contextvars.ContextVar("step", default="-")
local = Local()


def _request_thread() -> ThreadSensitiveContext:
    return ThreadSensitiveContext(executor=Workers(1, "probe", "the request's sync code"))


def _set_and_report(value: str) -> tuple[str, str]:
    seen = step.get()
    step.set(value)
    local.value = value
    translation.activate("fr")
    return seen, threading.current_thread().name


@pytest.mark.parametrize("hop", [on_request_thread, sync_to_async], ids=["ours", "asgiref"])
async def test_the_callers_context_goes_in_and_its_changes_come_back(hop: object) -> None:
    step.set("before")
    async with _request_thread():
        seen, thread = await hop(_set_and_report)("set in the thread")  # type: ignore[operator]
    assert seen == "before"
    assert thread == "probe-1"
    assert step.get() == "set in the thread"
    assert local.value == "set in the thread"
    assert translation.get_language() == "fr"  # a LocaleMiddleware's process_request
    translation.deactivate()


async def test_every_call_of_a_request_runs_on_its_one_thread_and_asgirefs_too() -> None:
    async with _request_thread():
        ours = {await on_request_thread(threading.get_ident)() for _ in range(5)}
        theirs = await sync_to_async(threading.get_ident)()
    assert ours == {theirs}


async def test_an_async_to_sync_inside_runs_on_the_callers_loop() -> None:
    loop = asyncio.get_running_loop()

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async with _request_thread():
        assert await on_request_thread(async_to_sync(where))() is loop


async def test_exceptions_reach_the_caller_and_a_stop_iteration_is_a_runtime_error() -> None:
    def fail() -> None:
        raise LookupError("no such thing")

    def exhausted() -> None:
        next(iter(()))

    async with _request_thread():
        with pytest.raises(LookupError, match="no such thing"):
            await on_request_thread(fail)()
        with pytest.raises(RuntimeError, match="raised by the request's sync code"):
            await on_request_thread(exhausted)()
        assert await on_request_thread(str.upper)("still works") == "STILL WORKS"


async def test_a_call_cancelled_before_its_turn_does_not_run() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(5)

    async with _request_thread():
        busy = asyncio.ensure_future(on_request_thread(slow)())
        await asyncio.to_thread(started.wait, 5)
        queued = asyncio.ensure_future(on_request_thread(ran.append)("queued"))
        await asyncio.sleep(0)
        queued.cancel()
        release.set()
        await busy
        await on_request_thread(ran.append)("after")
    assert queued.cancelled()
    assert ran == ["after"]


async def test_without_one_of_our_threads_it_is_asgirefs() -> None:
    async with ThreadSensitiveContext():  # Django's own handler: a thread of its own
        _seen, thread = await on_request_thread(_set_and_report)("elsewhere")
    assert not thread.startswith("probe")
    assert step.get() == "elsewhere"
    translation.deactivate()
