"""``sse.asgi`` runs the project's middleware in fewer thread hops; every
request must see exactly what Django's own handler does: the same methods
in the same order, the same short-circuits, the same answers to exceptions.

Each case runs one request through both handlers and compares the trace of
middleware calls and the response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, markcoroutinefunction
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.test import AsyncRequestFactory, override_settings
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from agent_backend.settings import MIDDLEWARE  # Django's default stack
from sse._process.middleware import is_plain_mixin
from sse.asgi import ASGIHandler

TRACE: list[str] = []
# What a step does instead of passing: "respond" (a 299 response), "raise"
# (ValueError: a 500), "404" (Http404).
PLAN: dict[str, str] = {}
THREADS: set[int] = set()


def _step(name: str, sync: bool = True) -> HttpResponse | None:
    TRACE.append(name)
    if sync:
        THREADS.add(threading.get_ident())
    action = PLAN.get(name)
    if action == "respond":
        return HttpResponse(name, status=299)
    if action == "raise":
        raise ValueError(name)
    if action == "404":
        raise Http404(name)
    return None


class _Recording(MiddlewareMixin):
    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        return _step(f"{type(self).__name__}.request")

    def process_view(self, request: HttpRequest, *args: Any) -> HttpResponse | None:
        return _step(f"{type(self).__name__}.view")

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        _step(f"{type(self).__name__}.response")
        response[f"X-{type(self).__name__}"] = str(response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        _step(f"{type(self).__name__}.exception")


class A(_Recording):
    pass


class B(_Recording):
    pass


class C(_Recording):
    pass


class ResponseOnly(MiddlewareMixin):
    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        TRACE.append("ResponseOnly.response")
        return response


class Around:
    """An async-capable middleware that is not a mixin (as django-cors-headers')."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        TRACE.append("Around.before")
        response: HttpResponseBase = await self.get_response(request)
        TRACE.append("Around.after")
        response["X-Around"] = "1"
        return response


async def view(request: HttpRequest) -> HttpResponse:
    _step("view", sync=False)
    return HttpResponse("ok")


urlpatterns = [path("probe/", view)]

HERE = __name__


def _mw(*names: str) -> list[str]:
    return [f"{HERE}.{name}" for name in names]


async def _run(handler_class: type, middleware: list[str]) -> tuple[list[str], int, dict[str, str]]:
    TRACE.clear()
    with override_settings(MIDDLEWARE=middleware, ROOT_URLCONF=HERE):
        handler = handler_class()
        # As the handlers' __call__ does: the request's sync code gets a thread.
        async with ThreadSensitiveContext():
            response = await handler.get_response_async(AsyncRequestFactory().get("/probe/"))
    headers = {k: v for k, v in response.items() if k.startswith("X-") and k != "X-Frame-Options"}
    return list(TRACE), response.status_code, headers


CASES = [
    ("passes", _mw("A", "B", "C"), {}),
    ("a request answered", _mw("A", "B", "C"), {"B.request": "respond"}),
    ("a request raises", _mw("A", "B", "C"), {"B.request": "raise"}),
    ("the first request raises 404", _mw("A", "B", "C"), {"A.request": "404"}),
    ("a view step answers", _mw("A", "B", "C"), {"B.view": "respond"}),
    ("a view step raises", _mw("A", "B", "C"), {"C.view": "raise"}),
    ("the view raises", _mw("A", "B", "C"), {"view": "raise"}),
    ("a response raises", _mw("A", "B", "C"), {"C.response": "raise"}),
    ("the outermost response raises", _mw("A", "B", "C"), {"A.response": "raise"}),
    ("around a non-mixin", _mw("A", "Around", "B", "C"), {}),
    ("answered inside a non-mixin", _mw("A", "Around", "B", "C"), {"C.request": "respond"}),
    ("raised inside a non-mixin", _mw("A", "Around", "B"), {"B.request": "raise"}),
    ("response-only neighbours", _mw("ResponseOnly", "A", "ResponseOnly"), {"view": "404"}),
    (
        "the host project's (Django's default) stack",
        [*MIDDLEWARE, *_mw("A")],
        {},
    ),
]


@pytest.mark.parametrize(("middleware", "plan"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_grouped_chain_behaves_as_djangos(
    middleware: list[str], plan: dict[str, str]
) -> None:
    PLAN.clear()
    PLAN.update(plan)
    try:
        expected = await _run(DjangoASGIHandler, middleware)
        THREADS.clear()
        got = await _run(ASGIHandler, middleware)
    finally:
        PLAN.clear()
    assert got == expected
    assert len(THREADS) == 1, "all sync middleware of a request runs on one thread"


def test_only_plain_mixins_are_grouped() -> None:
    assert is_plain_mixin(A)
    assert not is_plain_mixin(Around)

    class OwnCall(MiddlewareMixin):
        async def __acall__(self, request: HttpRequest) -> Any:
            response: Any = self.get_response(request)
            return await response

    class AsyncMethod(MiddlewareMixin):
        async def process_request(self, request: HttpRequest) -> None:
            return None

    class SyncMode(MiddlewareMixin):
        async_capable = False

    assert not is_plain_mixin(OwnCall)
    assert not is_plain_mixin(AsyncMethod)
    assert not is_plain_mixin(SyncMode)


class SyncOnly:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        TRACE.append("SyncOnly")
        response: HttpResponseBase = self.get_response(request)
        return response


async def test_a_sync_only_middleware_keeps_djangos_chain() -> None:
    middleware = _mw("A", "SyncOnly", "B")
    assert await _run(ASGIHandler, middleware) == await _run(DjangoASGIHandler, middleware)
