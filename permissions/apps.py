from __future__ import annotations

from django.apps import AppConfig


class PermissionsConfig(AppConfig):
    name = "permissions"
    verbose_name = "Permission requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sse import register_backlog

        from . import checks
        from .backlog import has_pending, pending_requests

        checks.register()
        register_backlog(pending_requests, probe=has_pending)
