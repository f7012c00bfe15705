"""System checks for the ``SSE`` settings dict (ids ``sse.E001``...)."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import DEFAULTS

# A Bearer token anyone may try against .../sse/metrics: long enough not to guess.
MIN_METRICS_TOKEN_LENGTH = 16

# Events held for a second are no longer "within milliseconds"; held for 15 s,
# the listener's watchdog would take the socket for a silent Redis.
MAX_COALESCE_MS = 1000

POSITIVE_INTEGERS = (
    "BUFFER_SIZE",
    "BUFFER_TTL",
    "RETRY_MS",
    "QUEUE_SIZE",
    "MAX_CONNECTIONS_PER_SESSION",
    "MAX_CONNECTIONS",
    "MAX_EVENT_BYTES",
    "TICKET_TTL",
)


def register() -> None:
    checks.register(check_settings, checks.Tags.compatibility)
    checks.register(check_runserver, checks.Tags.compatibility)


def check_runserver(**kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py runserver`` without daphne serves WSGI: no stream can work
    there (a warning: the project may serve its streams elsewhere)."""
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if command != "runserver":
        return []
    from django.core.management import get_commands

    if get_commands().get("runserver") in ("daphne", "channels"):  # ASGI runservers
        return []
    return [
        checks.Warning(
            "runserver serves WSGI here, and event streams need an ASGI server.",
            hint="pip install daphne and put 'daphne' first in INSTALLED_APPS (its "
            "runserver serves ASGI), or serve with uvicorn or daphne.",
            id="sse.W010",
        )
    ]


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    user = getattr(settings, "SSE", {})
    if not isinstance(user, dict):
        return [
            checks.Error("SSE must be a dict.", hint="Set SSE = {...} in settings.", id="sse.E001")
        ]
    errors: list[checks.CheckMessage] = []
    for name in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            checks.Warning(
                f"SSE[{name!r}] is not a setting of the sse app.",
                hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
                id="sse.W001",
            )
        )
    for name in POSITIVE_INTEGERS:
        value = user.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(
                checks.Error(
                    f"SSE[{name!r}] must be a positive integer, not {value!r}.",
                    hint=f"The default is {DEFAULTS[name]}.",
                    id="sse.E002",
                )
            )
    interval = user.get("HEARTBEAT_INTERVAL", DEFAULTS["HEARTBEAT_INTERVAL"])
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        errors.append(
            checks.Error(
                "SSE['HEARTBEAT_INTERVAL'] must be a positive number of seconds, "
                f"not {interval!r}.",
                hint="The default is 30.",
                id="sse.E003",
            )
        )
    url = user.get("REDIS_URL")
    problem = _redis_url_problem(url) if url else None
    if problem is not None:
        errors.append(
            checks.Error(
                f"SSE['REDIS_URL'] is not a Redis URL: {url!r} ({problem}).",
                hint="Use redis://host:port/db, rediss://... or unix:///path (one server), "
                "redis+sentinel://host:port[,host:port...]/MASTER_NAME[/db] (Sentinel) or "
                "redis+cluster://host:port[,host:port...] (Cluster), rediss+... for TLS; "
                "unset for the in-process broker.",
                id="sse.E004",
            )
        )
    if url and importlib.util.find_spec("hiredis") is None:
        errors.append(
            checks.Error(
                "SSE['REDIS_URL'] is set but hiredis is not installed: the Redis "
                "listener parses with it.",
                hint="pip install 'redis[hiredis]' (agent-sse installs it), or unset "
                "REDIS_URL for the in-process broker.",
                id="sse.E008",
            )
        )
    errors.extend(_check_authentication(user))
    errors.extend(_check_metrics_token(user))
    if not isinstance(user.get("GC_FREEZE", True), bool):
        errors.append(
            checks.Error(
                f"SSE['GC_FREEZE'] must be True or False, not {user['GC_FREEZE']!r}.",
                hint="The default is False.",
                id="sse.E006",
            )
        )
    coalesce = user.get("COALESCE_MS", DEFAULTS["COALESCE_MS"])
    if (
        isinstance(coalesce, bool)
        or not isinstance(coalesce, int | float)
        or not 0 <= coalesce <= MAX_COALESCE_MS  # False for nan
    ):
        errors.append(
            checks.Error(
                f"SSE['COALESCE_MS'] must be a number of milliseconds from 0 to "
                f"{MAX_COALESCE_MS}, not {coalesce!r}.",
                hint="The default is 1; 0 reads every event as it arrives.",
                id="sse.E007",
            )
        )
    access = user.get("SESSION_ACCESS", DEFAULTS["SESSION_ACCESS"])
    try:
        loaded = import_string(access) if isinstance(access, str) else None
    except ImportError:
        loaded = None
    if not callable(loaded):
        errors.append(
            checks.Error(
                f"SSE['SESSION_ACCESS'] is not the dotted path of a callable: {access!r}.",
                hint="Point it at a function (user, session_id) -> bool.",
                id="sse.E005",
            )
        )
    return errors


def _redis_url_problem(url: object) -> str | None:
    from ._transport.connect import parse_redis_url

    if not isinstance(url, str):
        return f"a string, not {type(url).__name__}"
    try:
        parse_redis_url(url)
    except ValueError as exc:
        return str(exc)
    return None


def _check_authentication(user: dict[str, Any]) -> list[checks.CheckMessage]:
    paths = user.get("AUTHENTICATION_CLASSES", DEFAULTS["AUTHENTICATION_CLASSES"])
    if not isinstance(paths, list | tuple) or not paths:
        return [
            checks.Error(
                f"SSE['AUTHENTICATION_CLASSES'] must be a non-empty list, not {paths!r}.",
                hint="Dotted paths of DRF authentication classes; the default is "
                f"{DEFAULTS['AUTHENTICATION_CLASSES']}.",
                id="sse.E009",
            )
        ]
    errors: list[checks.CheckMessage] = []
    for path in paths:
        try:
            loaded = import_string(path) if isinstance(path, str) else None
        except ImportError:
            loaded = None
        if not isinstance(loaded, type):
            errors.append(
                checks.Error(
                    f"SSE['AUTHENTICATION_CLASSES'] has {path!r}, which is not the dotted "
                    "path of a class.",
                    hint="e.g. 'rest_framework.authentication.SessionAuthentication'.",
                    id="sse.E009",
                )
            )
    return errors


def _check_metrics_token(user: dict[str, Any]) -> list[checks.CheckMessage]:
    token = user.get("METRICS_TOKEN")
    if token is None or token == "":  # unset
        return []
    if (
        isinstance(token, str)
        and len(token) >= MIN_METRICS_TOKEN_LENGTH
        and token.isascii()
        and token.isprintable()
        and " " not in token
    ):
        return []
    return [
        checks.Error(
            f"SSE['METRICS_TOKEN'] must be a string of at least {MIN_METRICS_TOKEN_LENGTH} "
            'printable ASCII characters without spaces, or None (or "": unset).',
            hint="e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'; "
            "unset, only staff users read the metrics.",
            id="sse.E010",
        )
    ]
