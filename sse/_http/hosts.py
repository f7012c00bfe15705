"""``ALLOWED_HOSTS`` for the apps' URLs, answered in their JSON error shape."""

from __future__ import annotations

import logging

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from ..errors import error_response

# Where Django itself reports a bad Host header.
security_logger = logging.getLogger("django.security.DisallowedHost")


def refuse_disallowed_host(request: HttpRequest) -> HttpResponse | None:
    """A 400 response if the request's ``Host`` is not allowed, else None.
    Django checks the host only when something asks for it; a stream asks.
    Asked again (``sse.asgi``, then the stream view), the host is the one
    already allowed."""
    meta = request.META
    host = (meta.get("HTTP_X_FORWARDED_HOST"), meta.get("HTTP_HOST"), meta.get("SERVER_NAME"))
    if getattr(request, "_sse_allowed_host", None) == host:
        return None
    try:
        request.get_host()
    except DisallowedHost as exc:
        security_logger.error(str(exc), extra={"status_code": 400, "request": request})
        return error_response(400, "disallowed_host", "The Host header is not allowed.")
    request._sse_allowed_host = host  # type: ignore[attr-defined]
    return None
