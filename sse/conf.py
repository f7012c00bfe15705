"""The ``SSE = {...}`` settings dict, read on every access so that
``override_settings`` works."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Unset: the in-process broker (one process). Set: Redis shared by workers.
    "REDIS_URL": None,
    "BUFFER_SIZE": 100,
    "BUFFER_TTL": 600,
    "HEARTBEAT_INTERVAL": 30,
    "RETRY_MS": 3000,
    "QUEUE_SIZE": 100,
    "MAX_CONNECTIONS_PER_SESSION": 10,
    "MAX_CONNECTIONS": 10000,
    "MAX_EVENT_BYTES": 64 * 1024,
    "SESSION_ACCESS": "sse.sessions.owner_or_staff",
    # Seconds a stream ticket (POST .../sse/tickets/) stays good for one open.
    "TICKET_TTL": 30,
    # The apps' JSON endpoints authenticate with these, whatever the host's
    # REST_FRAMEWORK defaults are: a Bearer token first (a bad one is a 401
    # the JS client refreshes), then the Django session.
    "AUTHENTICATION_CLASSES": [
        "sse.authentication.JWTAuthentication",  # simplejwt's, any-case "Bearer"
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Keep long-lived objects out of full garbage collections
    # (sse._process.gc_freeze).  It changes the whole process: the host's choice.
    "GC_FREEZE": False,
    # Under load, the Redis listener reads events in batches at most this old.
    "COALESCE_MS": 4,
    # ``Authorization: Bearer <this>`` reads GET .../sse/metrics (Prometheus);
    # unset, only staff users may.
    "METRICS_TOKEN": None,
}


class Settings:
    def _get(self, name: str) -> Any:
        user = getattr(settings, "SSE", {})
        return (user if isinstance(user, dict) else {}).get(name, DEFAULTS[name])

    @property
    def TICKET_TTL(self) -> int:
        return int(self._get("TICKET_TTL"))

    @property
    def AUTHENTICATION_CLASSES(self) -> list[str]:
        return list(self._get("AUTHENTICATION_CLASSES"))

    @property
    def REDIS_URL(self) -> str | None:
        return self._get("REDIS_URL") or None

    @property
    def BUFFER_SIZE(self) -> int:
        return int(self._get("BUFFER_SIZE"))

    @property
    def BUFFER_TTL(self) -> int:
        return int(self._get("BUFFER_TTL"))

    @property
    def HEARTBEAT_INTERVAL(self) -> float:
        return float(self._get("HEARTBEAT_INTERVAL"))

    @property
    def RETRY_MS(self) -> int:
        return int(self._get("RETRY_MS"))

    @property
    def QUEUE_SIZE(self) -> int:
        return int(self._get("QUEUE_SIZE"))

    @property
    def MAX_CONNECTIONS_PER_SESSION(self) -> int:
        return int(self._get("MAX_CONNECTIONS_PER_SESSION"))

    @property
    def MAX_CONNECTIONS(self) -> int:
        return int(self._get("MAX_CONNECTIONS"))

    @property
    def MAX_EVENT_BYTES(self) -> int:
        return int(self._get("MAX_EVENT_BYTES"))

    @property
    def GC_FREEZE(self) -> bool:
        return bool(self._get("GC_FREEZE"))

    @property
    def COALESCE_MS(self) -> float:
        return float(self._get("COALESCE_MS"))

    @property
    def METRICS_TOKEN(self) -> str | None:
        return self._get("METRICS_TOKEN") or None

    @property
    def SESSION_ACCESS(self) -> str:
        return str(self._get("SESSION_ACCESS"))


conf = Settings()
