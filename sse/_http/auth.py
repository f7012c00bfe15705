"""Who opens a stream: a single-use ``?ticket=``, a simplejwt access token
from ``?token=`` (EventSource cannot send headers) or ``Authorization:
Bearer``; without any, the other ``SSE["AUTHENTICATION_CLASSES"]`` (by
default the Django session cookie, which a same-origin ``EventSource``
sends); then the session check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.request import Request

from .. import tickets
from ..authentication import JWTAuthentication
from ..exceptions import SessionNotFound
from ..sessions import can_read
from .api import authentication_classes


def raw_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.GET.get("token") or None


@dataclass(frozen=True, slots=True)
class StreamAccess:
    """Who opened a stream, until when (Unix seconds), and the key of the
    Django session it follows when the session cookie opened it."""

    user: Any
    expires_at: float
    django_session: str | None = None


def authorize_stream(request: HttpRequest, session_id: str) -> StreamAccess:
    """Sync, uses the ORM.  Raises DRF ``NotAuthenticated``/
    ``AuthenticationFailed`` or ``SessionNotFound``."""
    ticket = request.GET.get("ticket")
    token = raw_token(request)
    django_session = None
    if ticket:
        user, expires_at = tickets.spend(ticket, session_id)
    elif token is None:
        user, expires_at, django_session = _without_token(request)
    else:
        authentication = JWTAuthentication()
        validated = authentication.get_validated_token(token.encode())
        user = authentication.get_user(validated)
        expires_at = float(validated["exp"])
    if not can_read(user, session_id):
        raise SessionNotFound(session_id)
    return StreamAccess(user, expires_at, django_session)


def _without_token(request: HttpRequest) -> tuple[Any, float, str | None]:
    """The user the other authentication classes find (the session's).  A
    stream opened with the Django session ends when the session expires
    (``token_expired``: the browser reconnects with its cookie) or is gone,
    by logout (``access_revoked``: ``revocation`` checks its key)."""
    drf_request = Request(request, authenticators=[cls() for cls in authentication_classes()])
    user = drf_request.user
    if not user or not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    session = getattr(request, "session", None)
    if session is None or session.session_key is None:
        return user, math.inf, None  # another authentication class: no session to follow
    return user, session.get_expiry_date().timestamp(), session.session_key
