from __future__ import annotations

import asyncio
from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started


class SseConfig(AppConfig):
    name = "sse"
    verbose_name = "Server-Sent Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks
        from ._process import log_masking

        checks.register()
        log_masking.install()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # ASGI servers import the application before their loop runs:
            # start on the first request the serving loop handles.  Management
            # commands (migrate...) serve no request, so start nothing.
            request_started.connect(_start_on_first_request, dispatch_uid="sse-start")
        else:
            start_serving(loop)


def start_serving(loop: asyncio.AbstractEventLoop) -> None:
    """Per serving process: stream shutdown handling, the Redis listener,
    the metrics' flush, and start-up objects out of the garbage collector's
    way."""
    from . import metrics
    from ._process import gc_freeze, shutdown
    from ._stream.hub import get_hub
    from .conf import conf

    shutdown.install()
    if conf.GC_FREEZE:
        gc_freeze.freeze_start_up()
    get_hub().broker.start(loop)
    metrics.start(loop)


async def _start_on_first_request(sender: Any, **kwargs: Any) -> None:
    from django.core.handlers.asgi import ASGIHandler

    if isinstance(sender, type) and issubclass(sender, ASGIHandler):
        request_started.disconnect(dispatch_uid="sse-start")
        start_serving(asyncio.get_running_loop())
