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
from asgiref.sync import (
    ThreadSensitiveContext,
    iscoroutinefunction,
    markcoroutinefunction,
)
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.test import AsyncRequestFactory, override_settings
from django.urls import URLResolver, path
from django.utils.deprecation import MiddlewareMixin

import sse._process.middleware
from agent_backend.settings import MIDDLEWARE  # Django's default stack
from sse._process import asgi as handler_module
from sse._process.middleware import is_plain_mixin
from sse._process.threads import Workers, on_request_thread
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
    """A sync- and async-capable middleware that is not a mixin (as
    django-cors-headers' is)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        TRACE.append("Around.before")
        response: HttpResponseBase = self.get_response(request)
        return self._after(response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        TRACE.append("Around.before")
        return self._after(await self.get_response(request))

    def _after(self, response: HttpResponseBase) -> HttpResponseBase:
        TRACE.append("Around.after")
        response["X-Around"] = "1"
        return response


async def view(request: HttpRequest) -> HttpResponse:
    _step("view", sync=False)
    return HttpResponse("ok")


def sync_view(request: HttpRequest) -> HttpResponse:
    _step("view")
    return HttpResponse("ok")


urlpatterns = [path("probe/", view), path("probe-sync/", sync_view)]

HERE = __name__


def _mw(*names: str) -> list[str]:
    return [f"{HERE}.{name}" for name in names]


async def _run(
    handler_class: type, middleware: list[str], url: str = "/probe/"
) -> tuple[list[str], int, dict[str, str]]:
    TRACE.clear()
    with override_settings(MIDDLEWARE=middleware, ROOT_URLCONF=HERE):
        handler = handler_class()
        # As sse.asgi's __call__ does: the request's sync code gets a thread.
        async with ThreadSensitiveContext(executor=Workers(1, "probe", "the request's sync code")):
            response = await handler.get_response_async(AsyncRequestFactory().get(url))
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


# An async view's request goes through the grouped chain; a sync view's
# through the sync chain, in one hop.
@pytest.mark.parametrize("url", ["/probe/", "/probe-sync/"], ids=["async view", "sync view"])
@pytest.mark.parametrize(("middleware", "plan"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_grouped_chain_behaves_as_djangos(
    middleware: list[str], plan: dict[str, str], url: str
) -> None:
    PLAN.clear()
    PLAN.update(plan)
    try:
        expected = await _run(DjangoASGIHandler, middleware, url)
        THREADS.clear()
        got = await _run(ASGIHandler, middleware, url)
    finally:
        PLAN.clear()
    assert got == expected
    assert len(THREADS) == 1, "all sync code of a request runs on one thread"


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


@pytest.mark.parametrize("url", ["/probe/", "/probe-sync/"], ids=["async view", "sync view"])
async def test_a_sync_only_middleware_keeps_djangos_chain(url: str) -> None:
    middleware = _mw("A", "SyncOnly", "B")
    expected = await _run(DjangoASGIHandler, middleware, url)
    assert await _run(ASGIHandler, middleware, url) == expected


class AsyncOnly(Around):
    sync_capable = False


async def test_a_middleware_that_cannot_run_sync_keeps_sync_views_on_djangos_path() -> None:
    middleware = _mw("A", "AsyncOnly", "B")
    expected = await _run(DjangoASGIHandler, middleware, "/probe-sync/")
    assert await _run(ASGIHandler, middleware, "/probe-sync/") == expected
    with override_settings(MIDDLEWARE=middleware):
        assert ASGIHandler()._sync_response is None


async def test_a_sync_views_middleware_and_view_take_one_hop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hops: list[str] = []
    real = on_request_thread

    def counted(func: Callable[..., Any]) -> Any:
        name = getattr(func, "__qualname__", repr(func))

        def hop(*args: Any, **kwargs: Any) -> Any:
            hops.append(name)
            return func(*args, **kwargs)

        return real(hop)

    # Every hop the handler and the middleware chains take, as they are built.
    monkeypatch.setattr(handler_module, "on_request_thread", counted)
    monkeypatch.setattr(sse._process.middleware, "on_request_thread", counted)
    await _run(ASGIHandler, _mw("A", "B", "C"), "/probe-sync/")
    assert hops == ["BaseHandler.get_response"]
    hops.clear()
    await _run(ASGIHandler, _mw("A", "B", "C"), "/probe/")
    assert hops == ["MixinRun.enter", "ViewMethods.run", "MixinRun.leave"]


def other_view(request: HttpRequest) -> HttpResponse:
    _step("other view")
    return HttpResponse("other")


class _OtherURLs:
    urlpatterns = [path("probe-sync/", other_view)]


class Reroute(MiddlewareMixin):
    """Sends the request to another URLconf, as a per-host middleware does."""

    def process_request(self, request: HttpRequest) -> None:
        request.urlconf = _OtherURLs  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["/probe/", "/probe-sync/"], ids=["async view", "sync view"])
async def test_the_path_is_resolved_once_and_a_middleware_may_reroute_it(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    resolved: list[str] = []
    real = URLResolver.resolve

    def counted(self: URLResolver, path: str) -> Any:
        resolved.append(path)
        return real(self, path)

    monkeypatch.setattr(URLResolver, "resolve", counted)
    await _run(ASGIHandler, _mw("A", "B"), url)
    assert resolved == [url]
    rerouted = _mw("A", "Reroute", "B")
    expected = await _run(DjangoASGIHandler, rerouted, url)
    if url == "/probe-sync/":
        assert "other view" in expected[0]
    assert await _run(ASGIHandler, rerouted, url) == expected
