"""The ``PERMISSIONS = {...}`` settings dict, read on every access so that
``override_settings`` works."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Seconds an agent waits for a person before the request expires.
    "TIMEOUT": 300,
    # Dotted path of a callable deciding some requests before a person is
    # asked (see ``permissions.policies``); None asks a person every time.
    "POLICY": None,
    # How many reverse proxies in front of the server append to
    # X-Forwarded-For.  0 records REMOTE_ADDR: the header is client-supplied
    # and only trustworthy when a proxy we run wrote it.
    "NUM_PROXIES": 0,
}


def is_timeout(value: object) -> TypeGuard[int | float]:
    """A number of seconds a request may wait: positive and finite (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 < value < math.inf


class Settings:
    def _get(self, name: str) -> Any:
        user = getattr(settings, "PERMISSIONS", {})
        return (user if isinstance(user, dict) else {}).get(name, DEFAULTS[name])

    @property
    def TIMEOUT(self) -> float:
        return float(self._get("TIMEOUT"))

    @property
    def POLICY(self) -> str | None:
        return self._get("POLICY") or None

    @property
    def NUM_PROXIES(self) -> int:
        return int(self._get("NUM_PROXIES"))


conf = Settings()
