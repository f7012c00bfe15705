from __future__ import annotations

from django.apps import AppConfig


class PermissionsConfig(AppConfig):
    name = "permissions"
    verbose_name = "Permission requests"
    default_auto_field = "django.db.models.BigAutoField"
