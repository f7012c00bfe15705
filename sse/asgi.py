"""An ASGI entry point for projects that serve many streams.

``get_asgi_application()`` is Django's, except for one thing: Django starts a
new thread for the sync code of every request (its ``request_started``
receivers, sync middleware and views run there), and the event loop waits
for each thread to start.  During a reconnect storm of thousands of streams
that start-up took a third of the loop's time.  Here each request's sync
code runs on one thread of a fixed set instead, in turn.  The rule Django
relies on holds: all sync code of one request runs on one thread.  The cost:
a request whose sync code blocks for long delays the sync code of the
requests that share its thread, as under a threaded WSGI server.

And event streams skip the project's middleware: they authenticate
themselves, and each ``MiddlewareMixin`` middleware costs two hops to a
thread per request, which was most of what opening a stream cost (a storm of
2,000 reconnects: 6.8 s with the default middleware, 4.1 s without).  Every
other URL goes through the middleware as usual.

And the broker sends an event to a stream that waits for one itself, from
its callback, with the server's ASGI ``send``: the stream's task does not
wake up per event (see ``Connection.offer``).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.urls import NoReverseMatch, reverse

THREADS = 16


class _StreamHandler(DjangoASGIHandler):
    """Django's handler without middleware, for event streams."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # What BaseHandler.load_middleware builds for an empty MIDDLEWARE.
        get_response = getattr(self, "_get_response_async" if is_async else "_get_response")
        self._middleware_chain = convert_exception_to_response(get_response)

    async def send_response(self, response: Any, send: Any) -> None:
        from .streams import EventStreamResponse  # imports models: not before setup

        if isinstance(response, EventStreamResponse):
            # The broker sends events to the waiting stream itself.
            response.connection.send = send
        await super().send_response(response, send)


class ASGIHandler(DjangoASGIHandler):
    """Django's handler; each request's sync code runs on a pooled thread,
    and event streams skip the middleware."""

    def __init__(self, threads: int = THREADS) -> None:
        super().__init__()
        self._threads = itertools.cycle(
            [ThreadPoolExecutor(1, thread_name_prefix="django-sync") for _ in range(threads)]
        )
        self._streams = _StreamHandler()
        self._streams_prefix: str | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        handler: DjangoASGIHandler = self
        if scope["path"].startswith(self._stream_paths()):
            handler = self._streams
        async with ThreadSensitiveContext(executor=next(self._threads)):
            await handler.handle(scope, receive, send)

    def _stream_paths(self) -> str:
        """The path prefix where the project mounted the event streams."""
        if self._streams_prefix is None:
            try:
                path = reverse("sse:events", kwargs={"session_id": "x"})
            except NoReverseMatch:
                path = ""
            # Without the session id; a prefix no path starts with if unmounted.
            self._streams_prefix = path[:-1] if path else "\0"
        return self._streams_prefix


def get_asgi_application() -> ASGIHandler:
    """Use in ``asgi.py`` instead of ``django.core.asgi.get_asgi_application``."""
    django.setup(set_prefix=False)
    return ASGIHandler()
