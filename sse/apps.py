from __future__ import annotations

import asyncio

from django.apps import AppConfig


class SseConfig(AppConfig):
    name = "sse"
    verbose_name = "Server-Sent Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, logging, shutdown
        from .brokers import get_broker
        from .conf import conf

        checks.register()
        logging.install()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No serving loop (migrate, shell, a daphne process that has not
            # started its reactor yet): the listener starts with the first
            # stream instead.
            return
        shutdown.install()
        if conf.REDIS_URL:
            get_broker().listener(loop)  # type: ignore[attr-defined]
