"""An ASGI entry point for projects that serve many streams.

``get_asgi_application()`` is Django's, except for one thing: Django starts a
new thread for the sync code of every request (its ``request_started``
receivers, sync middleware and views run there), and the event loop waits
for each thread to start.  During a reconnect storm of thousands of streams
that start-up took a third of the loop's time.  Here each request's sync
code runs on one thread of a fixed set instead, in turn.  The rule Django
relies on holds: all sync code of one request runs on one thread, and the
apps' own hops to it (the middleware's, the request's signals, closing the
response) are ``request_thread_call``'s, one queue put each.  The cost:
a request whose sync code blocks for long delays the sync code of the
requests that share its thread, as under a threaded WSGI server.

The project's middleware runs with fewer hops to that thread: Django's
``MiddlewareMixin`` classes next to each other run their ``process_request``
methods in one hop, their ``process_view`` in one and their
``process_response`` in one, in Django's order and with Django's handling of
early responses and exceptions (``sse._process.middleware``).  A default
project's seven middleware take 3 hops a request instead of 13.  A request
to a sync view (a DRF endpoint) takes one: its middleware and view run on
that thread as a WSGI server runs them, through a second, sync, instance of
the project's middleware chain (``MIDDLEWARE`` is built twice; each
instance serves its own requests).  That saves 0.7 ms of CPU per request on
a 2 GHz core.  A project with a middleware that cannot run sync keeps
Django's path for those requests.  Two more hops are shared: the
``request_started`` receivers (when all are sync) run first in the request's
first hop when that hop is ours (the outermost middleware is grouped), and
an event stream's authorisation runs in the hop of the ``process_view``
methods (``view_prelude``).

Each request runs in two tasks where Django's handler has three: the
request's own (middleware, view, response) and the one that called the
application, which listens for the client's disconnect meanwhile instead of
waiting for two others.  An event stream lives for hours, and once it has
started it holds neither its request nor its response's headers: a stream
takes 19 KiB instead of 31 (bench/RESULTS.md).

Streams are requests like any other: the project's middleware, its
``ALLOWED_HOSTS`` and everything else apply to them.  One difference: a
request to the apps' URLs with a ``Host`` that ``ALLOWED_HOSTS`` refuses is
answered in the apps' JSON error shape (400), before the middleware would
answer it with the project's HTML error page.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, cast

import django
from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import get_script_prefix
from django.core.handlers.base import BaseHandler
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponseBase
from django.http.response import ResponseHeaders
from django.urls import NoReverseMatch, Resolver404, ResolverMatch, get_resolver, set_script_prefix
from django.utils.module_loading import import_string

from .._tasks import cancel_and_wait
from ..conf import conf
from . import gc_freeze
from .threads import (
    Workers,
    on_request_thread,
    owe_request_thread,
    owes_request_thread,
    request_thread_call,
)

# Threads for the requests' sync code.  Fewer threads contend less for the
# GIL: a reconnect storm of 3,000 opens cost 1.0-1.2 ms of CPU per open on 4
# threads and 1.2-1.5 ms on 16 (in process, 2 vCPU).  More threads let more
# requests block at once (slow sync views): ``get_asgi_application(threads=)``.
THREADS = 4


class _ResolvedOnce:
    """``resolve_request`` that takes the match ``_sync_view`` found for the
    same path and URLconf, instead of resolving the path a second time."""

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        found: tuple[str, ResolverMatch] | None = getattr(request, "_sse_resolved", None)
        if found is None or found[0] != request.path_info or hasattr(request, "urlconf"):
            return super().resolve_request(request)  # type: ignore[misc, no-any-return]
        request.resolver_match = found[1]
        return found[1]


class _SyncHandler(_ResolvedOnce, BaseHandler):
    pass


class ASGIHandler(_ResolvedOnce, DjangoASGIHandler):
    """Django's handler; each request's sync code runs on a pooled thread."""

    def __init__(self, threads: int = THREADS) -> None:
        super().__init__()
        self._threads = itertools.cycle(
            [Workers(1, f"django-sync-{n}", "the request's sync code") for n in range(threads)]
        )
        self._apps_prefix: str | None = None
        sync = _sync_handler()
        self._sync_response = None if sync is None else on_request_thread(sync.get_response)
        self._hops_first: bool = getattr(self, "_sse_hops_first", False)

    def load_middleware(self, is_async: bool = False) -> None:
        from .middleware import load_grouped

        if not (is_async and load_grouped(self)):
            super().load_middleware(is_async)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Django's own __call__, with a pooled thread for the context.
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with ThreadSensitiveContext(executor=next(self._threads)):
            await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``handle`` (5.2) in two tasks where Django has three:
        this one listens for the client's disconnect while the request's task
        runs the middleware and the view and sends the response, and nothing
        else holds the request (``_process_request``).  What Django does on
        a disconnect or an error is done here as well; cancelled from
        outside, this also cancels the request's task (Django's keeps
        running)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        if conf.GC_FREEZE and scope["path"].startswith(self._prefix()):
            # Before the request's first hop: in a reconnect storm, thousands
            # are in flight before the first reaches its view.
            gc_freeze.stream_arriving(asyncio.get_running_loop())
        started = self._deferred_start(scope)
        if started is None:
            await _asend(signals.request_started, sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            if started is not None:
                await request_thread_call(started)
            await self.send_response(error_response, send)
            await request_thread_call(error_response.close)
            return
        if started is not None:
            owe_request_thread(started)
        process = asyncio.create_task(self._process_request(request, send))
        del request
        cancelled = False
        try:
            try:
                await _listen_until_done(self.listen_for_disconnect, receive, process)
            except RequestAborted:
                # The client went away: the view may handle its cancellation.
                try:
                    await cancel_and_wait([process])
                except asyncio.CancelledError:
                    # This handler's own, while the view ended: raised once
                    # the request is finished.
                    cancelled = True
            except BaseException:
                process.cancel()
                raise
            try:
                response = process.result()
            except asyncio.CancelledError:
                if owes_request_thread():  # cancelled before its first hop
                    await request_thread_call(_nothing)
                await _asend(signals.request_finished, sender=self.__class__)
            else:
                await request_thread_call(response.close)
        finally:
            body_file.close()
        if cancelled:
            raise asyncio.CancelledError

    def _deferred_start(self, scope: dict[str, Any]) -> Callable[[], None] | None:
        """The ``request_started`` receivers as one call for the request's
        first hop, when they are all sync and that hop is one of ours (the
        outermost middleware is grouped, with a ``process_request``; the
        sync views' chain hops first too): Django sends the signal before
        the middleware, and so does that hop, one hop to the thread fewer.
        None: send it now."""
        signal = signals.request_started
        if not self._hops_first or not signal.receivers:
            return None
        receivers, async_receivers = signal._live_receivers(self.__class__)
        if async_receivers or not receivers:
            return None
        return functools.partial(_send_to, receivers, signal, self.__class__, {"scope": scope})

    async def _process_request(self, request: HttpRequest, send: Any) -> HttpResponseBase:
        response = await self.run_get_response(request)
        if getattr(response, "streams_alone", False):
            _let_go(request, response)
            del request
        with contextlib.suppress(asyncio.CancelledError):  # the client went away meanwhile
            await self.send_response(response, send)
        return response

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        """Django's, except that a streaming response's header list is not
        kept while it streams, nor, for one that streams alone, its headers."""
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": _headers(response),
            }
        )
        if response.streaming:
            if getattr(response, "streams_alone", False):
                response.headers = ResponseHeaders({})
            parts: AsyncGenerator[bytes, None] = aiter(cast(Any, response))
            async with aclosing(parts) as content:
                async for part in content:
                    if len(part) <= self.chunk_size:  # an event stream's every part
                        await send({"type": "http.response.body", "body": part, "more_body": True})
                        continue
                    for chunk, _ in self.chunk_bytes(part):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body"})
        else:
            for chunk, last in self.chunk_bytes(response.content):  # type: ignore[attr-defined]
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        if request.path.startswith(self._prefix()):
            from .._http.hosts import refuse_disallowed_host  # imports DRF: after setup

            refused = refuse_disallowed_host(request)
            if refused is not None:
                refused._resource_closers.append(request.close)  # type: ignore[attr-defined]
                return refused
        if self._sync_response is not None and _sync_view(request):
            response: HttpResponseBase = await self._sync_response(request)
            return response
        return await super().get_response_async(request)

    def _prefix(self) -> str:
        """Where the project mounted the apps' ``sse/`` URLs."""
        if self._apps_prefix is None:
            from ..urls import api_base

            try:
                self._apps_prefix = api_base() + "/sse/"
            except NoReverseMatch:
                self._apps_prefix = "\0"  # a prefix no path starts with: not mounted
        return self._apps_prefix


_NO_CONTEXT = contextvars.Context()


async def _listen_until_done(
    listen: Callable[[Any], Awaitable[None]], receive: Any, process: asyncio.Task[Any]
) -> None:
    """``await listen(receive)`` until ``process`` is done: then the wait is
    cancelled, and that cancellation is taken back (``uncancel``), so that
    ``asyncio.timeout`` or a task group around the application still sees
    its own.  Raises what ``listen`` raises, or a cancellation from outside."""
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    listening = True
    stopped = False

    def stop(_: object) -> None:
        nonlocal stopped
        if listening:
            stopped = True
            task.cancel()

    process.add_done_callback(stop, context=_NO_CONTEXT)  # not a copy of the request's
    try:
        await listen(receive)
    except asyncio.CancelledError:
        if not stopped or task.uncancel() > cancelling:
            raise
    finally:
        listening = False
        process.remove_done_callback(stop)


def _let_go(request: HttpRequest, response: HttpResponseBase) -> None:
    """A response that streams alone (an event stream, once its view has
    returned) lives for hours, and the request's objects (its headers, the
    middleware's session, user and messages, the URL match) take 7 KB a
    stream: close the request now, as the response's end would.
    Frozen objects are never collected (``GC_FREEZE``), and a request is
    garbage only once the collector breaks its cycles (``request.user``
    refers back to the request): then its attributes are cleared as well."""
    response._resource_closers.remove(request.close)  # type: ignore[attr-defined]
    request.close()
    if conf.GC_FREEZE:
        request.__dict__.clear()


def _headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    """The response's headers and cookies for ``http.response.start``, as
    Django encodes them."""
    headers = [(_bytes(name, "ascii"), _bytes(value, "latin1")) for name, value in response.items()]
    for c in response.cookies.values():
        headers.append((b"Set-Cookie", c.output(header="").encode("ascii").strip()))
    return headers


async def _asend(signal: Signal, sender: Any, **named: Any) -> None:
    """``signal.asend``: with only sync receivers (Django's own, for a
    request's start and end), they run in one ``request_thread_call``."""
    if not signal.receivers:
        return
    receivers, async_receivers = signal._live_receivers(sender)
    if async_receivers:
        await signal.asend(sender, **named)
    elif receivers:
        await request_thread_call(_send_to, receivers, signal, sender, named)


def _nothing() -> None:
    pass


def _send_to(receivers: list[Any], signal: Signal, sender: Any, named: dict[str, Any]) -> None:
    """What ``asend`` does on the request's thread for its sync receivers."""
    for receiver in receivers:
        receiver(signal=signal, sender=sender, **named)


def _bytes(text: str | bytes, encoding: str) -> bytes:
    return text.encode(encoding) if isinstance(text, str) else bytes(text)


def _sync_handler() -> BaseHandler | None:
    """The project's middleware chain in sync mode, as ``WSGIHandler`` builds
    it, unless one middleware cannot run sync."""
    classes = [import_string(path) for path in settings.MIDDLEWARE]
    if not all(getattr(cls, "sync_capable", True) for cls in classes):
        return None
    handler = _SyncHandler()
    handler.load_middleware(is_async=False)
    return handler


def _sync_view(request: HttpRequest) -> bool:
    """Whether the project's URLs route the request to a sync view.  The
    match is kept for the handler (``_ResolvedOnce``); a middleware that
    changes ``request.urlconf`` or the path is still obeyed: the path is
    resolved again, and an async view found then runs as Django runs it."""
    try:
        match = get_resolver().resolve(request.path_info)
    except Resolver404:
        return False
    request._sse_resolved = (request.path_info, match)  # type: ignore[attr-defined]
    return not iscoroutinefunction(match.func)


def get_asgi_application(threads: int = THREADS) -> ASGIHandler:
    """Use in ``asgi.py`` instead of ``django.core.asgi.get_asgi_application``.
    ``threads``: how many threads run the requests' sync code."""
    django.setup(set_prefix=False)
    return ASGIHandler(threads)
