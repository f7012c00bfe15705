"""``sse.asgi``'s ``handle``: two tasks where Django's has three, and an
event stream that holds neither its request nor its headers once it has
started.  Each request here goes through the handler's ASGI interface, as a
server calls it; where Django's handler is the reference, both run the same
request and what they did is compared."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.core import signals
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.test import override_settings
from django.urls import include, path

from agent_backend.settings import MIDDLEWARE
from sse._process.threads import Workers
from sse.asgi import ASGIHandler
from tests.conftest import MakeSession, MakeUser

TRACE: list[str] = []
SEEN: list[HttpRequest] = []


async def slow(request: HttpRequest) -> HttpResponse:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        TRACE.append("view cancelled")
        raise
    return HttpResponse("late")


async def slow_to_stop(request: HttpRequest) -> HttpResponse:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        TRACE.append("view cancelled")
        await asyncio.sleep(30)  # cleaning up, until cancelled again
        raise
    return HttpResponse("late")


async def quick(request: HttpRequest) -> HttpResponse:
    return HttpResponse("quick")


async def fails(request: HttpRequest) -> HttpResponse:
    raise ValueError("the view failed")


async def streaming(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(30)

    return StreamingHttpResponse(parts())


urlpatterns = [
    path("slow/", slow),
    path("slow-to-stop/", slow_to_stop),
    path("quick/", quick),
    path("fails/", fails),
    path("streaming/", streaming),
    path("", include("agent_backend.urls")),
]


class Keep:
    """Keeps every request (strongly) for the test to look at."""

    sync_capable, async_capable = False, True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        SEEN.append(request)
        response: HttpResponseBase = await self.get_response(request)
        return response


class WrapContent:
    """Wraps a streaming response's content, as a middleware that counts
    bytes or adds a trailer would: the wrapper uses the request."""

    sync_capable, async_capable = False, True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response: Any = await self.get_response(request)
        if response.streaming:
            inner = response.streaming_content

            async def wrapped() -> AsyncIterator[bytes]:
                yield f": for {request.path}\n\n".encode()
                async for part in inner:
                    yield part

            response.streaming_content = wrapped()
        return response


def _scope(path: str) -> dict[str, Any]:
    route, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


class Client:
    """One request to a handler through its ASGI interface."""

    def __init__(self, handler: Any, path: str) -> None:
        self.scope = _scope(path)
        self.sent: list[dict[str, Any]] = []
        self.body = asyncio.Event()
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        self.task = asyncio.create_task(handler(self.scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        return await self._incoming.get()

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message.get("body"):
            self.body.set()

    def disconnect(self) -> None:
        self._incoming.put_nowait({"type": "http.disconnect"})

    @property
    def content(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent)


@pytest.fixture
def finished() -> Any:
    """How many times ``request_finished`` was sent."""
    count = [0]

    def receiver(**kwargs: Any) -> None:
        count[0] += 1

    signals.request_finished.connect(receiver)
    yield count
    signals.request_finished.disconnect(receiver)


def _project(middleware: list[str]) -> Any:
    """This module's URLs (and the project's) behind ``middleware``."""
    return override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=middleware)


@pytest.mark.parametrize("handler_class", [DjangoASGIHandler, ASGIHandler])
async def test_a_disconnect_cancels_the_view_and_finishes_the_request(
    handler_class: type, finished: Any
) -> None:
    TRACE.clear()
    with _project(MIDDLEWARE):
        client = Client(handler_class(), "/slow/")
        await asyncio.sleep(0.2)
        client.disconnect()
        await asyncio.wait_for(client.task, 5)
    assert TRACE == ["view cancelled"]
    assert finished[0] == 1
    assert client.sent == []


@pytest.mark.parametrize("handler_class", [DjangoASGIHandler, ASGIHandler])
async def test_a_disconnect_ends_a_streaming_response(handler_class: type, finished: Any) -> None:
    with _project(MIDDLEWARE):
        client = Client(handler_class(), "/streaming/")
        await asyncio.wait_for(client.body.wait(), 5)
        client.disconnect()
        await asyncio.wait_for(client.task, 5)
    assert client.sent[0]["status"] == 200
    assert client.content == b"first"
    assert finished[0] == 1


async def test_answers_and_failures_are_djangos() -> None:
    got = {}
    for handler_class in (DjangoASGIHandler, ASGIHandler):
        with _project(MIDDLEWARE):
            quick, fails = Client(handler_class(), "/quick/"), Client(handler_class(), "/fails/")
            await asyncio.wait_for(asyncio.gather(quick.task, fails.task), 5)
        got[handler_class] = [
            (client.sent[0]["status"], client.sent[0]["headers"], client.content)
            for client in (quick, fails)
        ]
    assert got[ASGIHandler] == got[DjangoASGIHandler]
    assert [status for status, _, _ in got[ASGIHandler]] == [200, 500]


async def test_the_handler_leaves_no_cancellation_behind() -> None:
    """The listening half is stopped by cancelling it; ``asyncio.timeout``
    around the application must not see that as its own."""
    with _project(MIDDLEWARE):
        async with asyncio.timeout(5):
            await ASGIHandler()(_scope("/quick/"), _request(), _ignore)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        await asyncio.sleep(0)  # a cancellation left pending would be raised here


async def test_a_cancellation_from_outside_ends_the_view() -> None:
    TRACE.clear()
    with _project(MIDDLEWARE), pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await ASGIHandler()(_scope("/slow/"), _request(), _ignore)
    await asyncio.sleep(0.1)
    assert TRACE == ["view cancelled"]


async def test_a_cancellation_while_a_disconnected_view_stops_is_raised(finished: Any) -> None:
    """The client went away and the view is ending when the handler is
    cancelled from outside (a server shutting down, ``asyncio.timeout``
    around the application): the request is finished, and the cancellation
    is raised, not swallowed."""
    TRACE.clear()
    with _project(MIDDLEWARE):
        client = Client(ASGIHandler(), "/slow-to-stop/")
        await asyncio.sleep(0.2)
        client.disconnect()
        await asyncio.sleep(0.2)
        assert TRACE == ["view cancelled"]
        client.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(client.task, 5)
    assert client.task.cancelled()
    assert finished[0] == 1


def _request() -> Callable[[], Any]:
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    return receive


async def _ignore(message: dict[str, Any]) -> None:
    pass


def _live_requests(path: str) -> int:
    gc.collect()
    # type(), not isinstance(): the latter would touch dead weak proxies.
    return sum(
        1
        for o in gc.get_objects()
        if issubclass(type(o), HttpRequest) and getattr(o, "path", None) == path
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("gc_freeze", [False, True], ids=["collector", "GC_FREEZE"])
async def test_an_open_stream_holds_neither_its_request_nor_its_headers(
    make_user: MakeUser, make_session: MakeSession, settings: Any, gc_freeze: bool
) -> None:
    settings.SSE = {"GC_FREEZE": gc_freeze}
    user, token = make_user()
    sid = make_session(user).session_id
    url = f"/agent_backend/api/sse/events/{sid}"
    SEEN.clear()
    with _project([*MIDDLEWARE, f"{__name__}.Keep"]):
        client = Client(ASGIHandler(), f"{url}?token={token}")
        await asyncio.wait_for(client.body.wait(), 10)
        assert client.sent[0]["status"] == 200
        assert b'"type":"connected"' in client.content.replace(b" ", b"")
        (request,) = SEEN
        if gc_freeze:
            # Frozen, its cycles would never be broken: it is emptied.
            assert vars(request) == {}
        else:
            assert request.path == url
            kept = weakref.ref(request)
            SEEN.clear()
            del request
            assert await asyncio.to_thread(_live_requests, url) == 0
            assert kept() is None
        streams = [o for o in gc.get_objects() if type(o).__name__ == "EventStreamResponse"]
        assert [dict(o.headers) for o in streams] == [{}]
        client.disconnect()
        await asyncio.wait_for(client.task, 5)


@pytest.mark.django_db(transaction=True)
async def test_a_stream_whose_content_a_middleware_wraps_keeps_its_request(
    make_user: MakeUser, make_session: MakeSession, settings: Any
) -> None:
    settings.SSE = {"GC_FREEZE": True}
    user, token = make_user()
    sid = make_session(user).session_id
    url = f"/agent_backend/api/sse/events/{sid}"
    with _project([*MIDDLEWARE, f"{__name__}.WrapContent"]):
        client = Client(ASGIHandler(), f"{url}?token={token}")
        await asyncio.wait_for(client.body.wait(), 10)
        assert client.content.startswith(f": for {url}\n\n".encode())
        assert await asyncio.to_thread(_live_requests, url) == 1
        headers = dict(client.sent[0]["headers"])
        assert headers[b"Content-Type"] == b"text/event-stream; charset=utf-8"
        client.disconnect()
        await asyncio.wait_for(client.task, 5)


@pytest.mark.parametrize("handler_class", [DjangoASGIHandler, ASGIHandler])
async def test_a_requests_start_reaches_its_sync_and_async_receivers_once(
    handler_class: type,
) -> None:
    seen: list[tuple[str, str]] = []

    def sync_receiver(scope: dict[str, Any], **kwargs: Any) -> None:
        seen.append((threading.current_thread().name.rstrip("0123456789-"), scope["path"]))

    async def async_receiver(scope: dict[str, Any], **kwargs: Any) -> None:
        seen.append(("async", scope["path"]))

    for receivers in ([sync_receiver], [sync_receiver, async_receiver]):
        seen.clear()
        for receiver in receivers:
            signals.request_started.connect(receiver)
        try:
            with _project(MIDDLEWARE):
                await asyncio.wait_for(handler_class()(_scope("/quick/"), _request(), _ignore), 5)
        finally:
            for receiver in receivers:
                signals.request_started.disconnect(receiver)
        threads = {name for name, _ in seen if name != "async"}
        assert len(seen) == len(receivers)
        assert {path for _, path in seen} == {"/quick/"}
        assert len(threads) == 1
        if handler_class is ASGIHandler:
            assert threads == {"django-sync"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("handler_class", "middleware", "thread"),
    [
        (ASGIHandler, MIDDLEWARE, "django-sync"),
        (ASGIHandler, [m for m in MIDDLEWARE if "csrf" not in m], "sse-db"),
        (DjangoASGIHandler, MIDDLEWARE, "sse-db"),
    ],
    ids=["sse.asgi", "no process_view", "Django's handler"],
)
async def test_a_streams_authorization_shares_the_hop_of_the_process_view_methods(
    make_user: MakeUser,
    make_session: MakeSession,
    monkeypatch: pytest.MonkeyPatch,
    handler_class: type,
    middleware: list[str],
    thread: str,
) -> None:
    """Under ``sse.asgi`` the stream's queries run on the request's thread,
    with the project's ``process_view`` methods; with none, or under
    Django's handler, in a hop of their own to the ORM's threads."""
    import sse._http.stream

    ran: list[str] = []
    authorize = sse._http.stream.authorize_stream

    def recorded(*args: Any) -> Any:
        ran.append(threading.current_thread().name.rstrip("0123456789-"))
        return authorize(*args)

    monkeypatch.setattr(sse._http.stream, "authorize_stream", recorded)
    user, token = make_user()
    sid = make_session(user).session_id
    with _project(middleware):
        client = Client(handler_class(), f"/agent_backend/api/sse/events/{sid}?token={token}")
        await asyncio.wait_for(client.body.wait(), 10)
        assert client.sent[0]["status"] == 200
        assert b'"type":"connected"' in client.content.replace(b" ", b"")
        client.disconnect()
        await asyncio.wait_for(client.task, 5)
    assert ran == [thread]


@pytest.mark.parametrize(
    ("names", "url", "hops"),
    [
        (["A", "B"], "/quick/", 4),  # enter (and the start), process_view, leave, close
        (["Around", "A"], "/quick/", 5),  # not a mixin outermost: the start hops alone
        (["A", "B"], "/probe-sync/", 2),  # the sync chain (and the start), close
    ],
    ids=["grouped outermost", "another outermost", "sync view"],
)
async def test_a_requests_start_runs_first_in_its_first_hop(
    monkeypatch: pytest.MonkeyPatch, names: list[str], url: str, hops: int
) -> None:
    """Under ``sse.asgi`` the ``request_started`` receivers run on the
    request's thread before its first middleware, as under Django's handler,
    in the hop of the middleware when it is ours: one hop fewer."""
    from tests import test_grouped_middleware as grouped

    def started(**kwargs: Any) -> None:
        grouped.TRACE.append("started")

    calls: list[str] = []
    real = Workers.call

    def counted(self: Workers, job: Any) -> Any:
        calls.append(self.name)
        return real(self, job)

    middleware = [f"{grouped.__name__}.{name}" for name in names]
    traces = []
    signals.request_started.connect(started)
    try:
        for handler_class in (DjangoASGIHandler, ASGIHandler):
            grouped.TRACE.clear()
            calls.clear()
            with monkeypatch.context() as patch:
                patch.setattr(Workers, "call", counted)
                with override_settings(ROOT_URLCONF=_ProbeURLs, MIDDLEWARE=middleware):
                    client = Client(handler_class(), url)
                    await asyncio.wait_for(client.task, 5)
            assert client.sent[0]["status"] == 200
            traces.append(list(grouped.TRACE))
    finally:
        signals.request_started.disconnect(started)
    assert traces[0] == traces[1]
    assert traces[1][0] == "started"
    assert len([name for name in calls if name.startswith("django-sync")]) == hops


class _ProbeURLs:
    from tests.test_grouped_middleware import urlpatterns as _probes

    urlpatterns = [*_probes, path("quick/", quick)]
