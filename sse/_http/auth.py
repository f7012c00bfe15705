"""Who opens a stream: a simplejwt access token from ``?token=`` (EventSource
cannot send headers) or ``Authorization: Bearer``, and the session check."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication

from ..exceptions import SessionNotFound
from ..sessions import can_read


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
    token = raw_token(request)
    if token is None:
        raise exceptions.NotAuthenticated()
    authentication = JWTAuthentication()
    validated = authentication.get_validated_token(token.encode())
    user = authentication.get_user(validated)
    if not can_read(user, session_id):
        raise SessionNotFound(session_id)
    return user, float(validated["exp"])
