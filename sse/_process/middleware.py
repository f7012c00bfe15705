"""The project's middleware in fewer thread hops (used by ``sse.asgi``).

Under ASGI, Django runs each ``MiddlewareMixin`` middleware in async mode:
its ``process_request``, ``process_view`` and ``process_response`` each hop
to the request's thread and back.  The seven middleware of a default
project make 13 hops per request, and a hop costs the event loop more than
the method it runs: during a reconnect storm of 2,000 streams the hops were
most of the loop's time.

Here a run of neighbouring middleware that are plain ``MiddlewareMixin``
subclasses (sync methods, Django's own ``__call__``) runs in three hops: all
their ``process_request`` in one, all their ``process_view`` in one, all
their ``process_response`` in one, on the request's thread as before.  The
order, the short-circuits and the conversion of exceptions to responses are
Django's (``MiddlewareMixin.__call__``, ``convert_exception_to_response``):

- a ``process_request`` that returns a response skips the middleware inside
  it and the view; its own ``process_response`` and those outside it run;
- one that raises is answered by ``response_for_exception``; the
  ``process_response`` of those outside it run, its own does not;
- one ``process_response`` that raises hands ``response_for_exception``'s
  answer to the next one out.

Any other middleware (async-capable classes such as django-cors-headers',
function middleware) stays where it is in the chain and is called as Django
calls it.  A project with a middleware that can only run sync keeps
Django's own chain.

An async view may name sync work it starts with (``view_prelude``: the
event stream's authorization queries); it runs in the hop of the last
``process_view`` methods, so a stream's open takes one hop to a thread
fewer.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response, response_for_exception
from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string

from .threads import on_request_thread

R = TypeVar("R")
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]
ViewMethod = Callable[..., Any]


def is_plain_mixin(middleware: type) -> bool:
    """A ``MiddlewareMixin`` whose methods are sync and whose call is Django's
    (and that does not opt out of async mode: ``async_capable = False``)."""
    return (
        isinstance(middleware, type)
        and issubclass(middleware, MiddlewareMixin)
        and getattr(middleware, "async_capable", False)
        and middleware.__call__ is MiddlewareMixin.__call__
        and middleware.__acall__ is MiddlewareMixin.__acall__
        and not any(
            inspect.iscoroutinefunction(getattr(middleware, name, None))
            for name in ("process_request", "process_view", "process_response")
        )
    )


class MixinRun:
    """Neighbouring plain middleware, outermost first, around ``inner``."""

    def __init__(self, middleware: list[MiddlewareMixin], inner: AsyncHandler) -> None:
        self.inner = inner
        self.requests = [
            (i, m.process_request)
            for i, m in enumerate(middleware)
            if hasattr(m, "process_request")
        ]
        self.responses = [
            (i, m.process_response)
            for i, m in reversed(list(enumerate(middleware)))
            if hasattr(m, "process_response")
        ]
        self.size = len(middleware)
        self._enter = on_request_thread(self.enter)
        self._leave = on_request_thread(self.leave)
        markcoroutinefunction(self)  # for the middleware outside it, as Django's mixin does

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if self.requests:
            response, entered = await self._enter(request)
        else:
            response, entered = None, self.size
        if response is None:
            response = await self.inner(request)
        if not any(i < entered for i, _ in self.responses):
            return response
        return await self._leave(request, response, entered)

    def enter(self, request: HttpRequest) -> tuple[HttpResponseBase | None, int]:
        """The ``process_request`` methods in order; how many middleware the
        request entered (whose ``process_response`` must run)."""
        for i, process in self.requests:
            try:
                response = process(request)
            except Exception as exc:
                return response_for_exception(request, exc), i
            if response is not None:
                return response, i + 1
        return None, self.size

    def leave(
        self, request: HttpRequest, response: HttpResponseBase, entered: int
    ) -> HttpResponseBase:
        for i, process in self.responses:
            if i >= entered:
                continue
            try:
                response = process(request, response)
            except Exception as exc:
                response = response_for_exception(request, exc)
        return response


class ViewMethods:
    """Neighbouring sync ``process_view`` methods, in one hop.  The last
    ones before the view also run the view's prelude (``view_prelude``)."""

    def __init__(self, methods: list[ViewMethod], last: bool = False) -> None:
        self.methods = methods
        self.last = last
        self._run = on_request_thread(self.run)

    async def __call__(self, *args: Any) -> HttpResponseBase | None:
        response: HttpResponseBase | None = await self._run(*args)
        return response

    def run(
        self, request: HttpRequest, view: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> HttpResponseBase | None:
        for method in self.methods:
            response: HttpResponseBase | None = method(request, view, args, kwargs)
            if response is not None:
                return response
        prelude = getattr(view, "sse_prelude", None) if self.last else None
        if prelude is not None:
            try:
                outcome: tuple[Any, Exception | None] = (prelude(request, *args, **kwargs), None)
            except Exception as exc:
                outcome = (None, exc)
            request._sse_prelude = outcome  # type: ignore[attr-defined]
        return None


def view_prelude(view: Callable[..., Any]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Register the decorated sync function as ``view``'s prelude: the sync
    work an async view starts with (its authorization queries).  Under
    ``sse.asgi`` it runs on the request's thread in the hop of the last
    ``process_view`` methods, with the view's arguments, and the view takes
    its outcome with ``took_prelude``; anywhere else it does not run, and
    the view does that work itself."""

    def register(prelude: Callable[..., R]) -> Callable[..., R]:
        view.sse_prelude = prelude  # type: ignore[attr-defined]
        return prelude

    return register


def took_prelude(request: HttpRequest) -> Any:
    """What the view's prelude returned for this request (raising what it
    raised), or None if it did not run."""
    outcome = request.__dict__.pop("_sse_prelude", None)
    if outcome is None:
        return None
    value, exc = outcome
    if exc is not None:
        raise exc
    return value


def load_grouped(handler: BaseHandler) -> bool:
    """Build ``handler``'s async middleware chain with grouped hops.

    Returns False, building nothing, when a middleware can only run sync:
    Django's own chain handles that case.
    """
    classes = [(path, import_string(path)) for path in settings.MIDDLEWARE]
    if any(
        not is_plain_mixin(cls) and not getattr(cls, "async_capable", False) for _, cls in classes
    ):
        return False
    view_methods: list[ViewMethod] = []
    template_methods: list[Any] = []
    exception_methods: list[Any] = []
    # The handler below the next middleware: async all the way down.
    chain: Any = convert_exception_to_response(handler._get_response_async)  # type: ignore[attr-defined]
    run: list[MiddlewareMixin] = []  # plain middleware waiting to be grouped, outermost first
    outermost: Any = None

    def close_run() -> None:
        nonlocal chain, run, outermost
        if run:
            outermost = MixinRun(run, chain)
            chain = convert_exception_to_response(outermost)
            run = []

    for path, cls in reversed(classes):
        plain = is_plain_mixin(cls)
        if not plain:
            close_run()
        try:
            instance = cls(_never_called if plain else chain)
        except MiddlewareNotUsed:
            continue
        if instance is None:
            raise ImproperlyConfigured(f"Middleware factory {path} returned None.")
        if hasattr(instance, "process_view"):
            view_methods.insert(0, instance.process_view)
        if hasattr(instance, "process_template_response"):
            template_methods.append(
                handler.adapt_method_mode(True, instance.process_template_response)
            )
        if hasattr(instance, "process_exception"):
            exception_methods.append(handler.adapt_method_mode(False, instance.process_exception))
        if plain:
            run.insert(0, instance)
        else:
            outermost = instance
            chain = convert_exception_to_response(instance)
    close_run()

    grouped: list[Any] = []
    pending: list[ViewMethod] = []
    for method in view_methods:
        if iscoroutinefunction(method):
            if pending:
                grouped.append(ViewMethods(pending))
                pending = []
            grouped.append(method)
        else:
            pending.append(method)
    if pending:
        grouped.append(ViewMethods(pending, last=True))

    handler._view_middleware = grouped  # type: ignore[attr-defined]
    handler._template_response_middleware = template_methods  # type: ignore[attr-defined]
    handler._exception_middleware = exception_methods  # type: ignore[attr-defined]
    handler._middleware_chain = chain  # type: ignore[attr-defined]
    # Whether every request's first sync code runs in a hop of ours.
    handler._sse_hops_first = isinstance(outermost, MixinRun) and bool(outermost.requests)  # type: ignore[attr-defined]
    return True


async def _never_called(request: HttpRequest) -> HttpResponseBase:
    """The ``get_response`` of grouped middleware: ``MixinRun`` calls their
    methods itself, never their ``__call__``.  (A mixin whose methods call
    ``self.get_response`` themselves is not plain; it fails here, a 500.)"""
    raise AssertionError("a grouped middleware was called as a whole")
