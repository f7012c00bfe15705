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
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

THREADS = 16


class ASGIHandler(DjangoASGIHandler):
    """Django's handler; each request's sync code runs on a pooled thread."""

    def __init__(self, threads: int = THREADS) -> None:
        super().__init__()
        self._threads = itertools.cycle(
            [ThreadPoolExecutor(1, thread_name_prefix="django-sync") for _ in range(threads)]
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with ThreadSensitiveContext(executor=next(self._threads)):
            await self.handle(scope, receive, send)


def get_asgi_application() -> ASGIHandler:
    """Use in ``asgi.py`` instead of ``django.core.asgi.get_asgi_application``."""
    django.setup(set_prefix=False)
    return ASGIHandler()
