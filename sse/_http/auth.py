"""Who opens a stream: a single-use ``?ticket=``, a simplejwt access token
from ``?token=`` (EventSource cannot send headers) or ``Authorization:
Bearer``; without any, the other ``SSE["AUTHENTICATION_CLASSES"]`` (by
default the Django session cookie, which a same-origin ``EventSource``
sends); then the session check."""

from __future__ import annotations

import math
from typing import Any

from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication

from .. import tickets
from ..exceptions import SessionNotFound
from ..sessions import can_read
from .api import authentication_classes


def raw_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.GET.get("token") or None


def authorize_stream(request: HttpRequest, session_id: str) -> tuple[Any, float]:
    """The user and the token's expiry (Unix seconds); sync, uses the ORM.

    Raises DRF ``NotAuthenticated``/``AuthenticationFailed`` or
    ``SessionNotFound``.
    """
    ticket = request.GET.get("ticket")
    token = raw_token(request)
    if ticket:
        user, expires_at = tickets.spend(ticket, session_id)
    elif token is None:
        user, expires_at = _without_token(request)
    else:
        authentication = JWTAuthentication()
        validated = authentication.get_validated_token(token.encode())
        user = authentication.get_user(validated)
        expires_at = float(validated["exp"])
    if not can_read(user, session_id):
        raise SessionNotFound(session_id)
    return user, expires_at


def _without_token(request: HttpRequest) -> tuple[Any, float]:
    """The user the other authentication classes find (the session's); a
    stream they open ends when the user or the session does, not at a
    token's expiry."""
    drf_request = Request(request, authenticators=[cls() for cls in authentication_classes()])
    user = drf_request.user
    if not user or not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    return user, math.inf
