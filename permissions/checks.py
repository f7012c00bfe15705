"""System checks for the ``PERMISSIONS`` settings dict (ids ``permissions.E001``...)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import DEFAULTS, is_timeout


def register() -> None:
    checks.register(check_settings, checks.Tags.compatibility)


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    user = getattr(settings, "PERMISSIONS", {})
    if not isinstance(user, dict):
        return [
            checks.Error(
                "PERMISSIONS must be a dict.",
                hint="Set PERMISSIONS = {...} in settings.",
                id="permissions.E001",
            )
        ]
    errors: list[checks.CheckMessage] = [
        checks.Warning(
            f"PERMISSIONS[{name!r}] is not a setting of the permissions app.",
            hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
            id="permissions.W001",
        )
        for name in sorted(set(user) - set(DEFAULTS))
    ]
    timeout = user.get("TIMEOUT", DEFAULTS["TIMEOUT"])
    if not is_timeout(timeout):
        errors.append(
            checks.Error(
                f"PERMISSIONS['TIMEOUT'] must be a positive number of seconds, not {timeout!r}.",
                hint=f"The default is {DEFAULTS['TIMEOUT']}.",
                id="permissions.E002",
            )
        )
    policy = user.get("POLICY")
    if policy is not None:
        try:
            loaded = import_string(policy) if isinstance(policy, str) else None
        except ImportError:
            loaded = None
        if not callable(loaded):
            errors.append(
                checks.Error(
                    f"PERMISSIONS['POLICY'] is not the dotted path of a callable: {policy!r}.",
                    hint="Point it at a function (PolicyRequest) -> PolicyDecision | None, "
                    "e.g. 'permissions.policies.allow_read_only', or set None.",
                    id="permissions.E003",
                )
            )
    proxies = user.get("NUM_PROXIES", DEFAULTS["NUM_PROXIES"])
    if isinstance(proxies, bool) or not isinstance(proxies, int) or proxies < 0:
        errors.append(
            checks.Error(
                f"PERMISSIONS['NUM_PROXIES'] must be a non-negative integer, not {proxies!r}.",
                hint="The number of reverse proxies in front of the server; 0 (the default) "
                "records REMOTE_ADDR and ignores X-Forwarded-For.",
                id="permissions.E004",
            )
        )
    return errors
