"""Single-use stream tickets: ``POST …/sse/tickets/`` makes one, a stream
opened with ``?ticket=`` spends it."""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework import exceptions

from .conf import conf
from .models import StreamTicket


def issue(user: Any, session_id: str, access_expires_at: int | None = None) -> tuple[str, datetime]:
    """A new ticket for ``user`` to open ``session_id``, and when it expires.
    ``access_expires_at``: the expiry of the token that bought it, which the
    stream keeps."""
    now = timezone.now()
    StreamTicket.objects.filter(expires_at__lte=now).delete()  # the spent and the stale
    ticket = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=conf.TICKET_TTL)
    StreamTicket.objects.create(
        digest=_digest(ticket),
        session_id=session_id,
        user=user,
        expires_at=expires_at,
        access_expires_at=access_expires_at,
    )
    return ticket, expires_at


def spend(ticket: str, session_id: str) -> tuple[Any, float]:
    """The user of a valid ticket for ``session_id``, which is then spent,
    and when the stream's access ends (Unix seconds; ``math.inf`` for a
    ticket bought with the session cookie); ``AuthenticationFailed`` (code
    ``ticket_invalid``) for any other ticket."""
    tickets = StreamTicket.objects.filter(digest=_digest(ticket))
    row = tickets.values("user_id", "session_id", "expires_at", "access_expires_at").first()
    # Two streams racing with one ticket: one delete finds the row.
    if row is None or tickets.delete()[0] != 1:
        raise _invalid()
    if row["expires_at"] <= timezone.now() or row["session_id"] != session_id:
        raise _invalid()
    user = get_user_model()._default_manager.filter(pk=row["user_id"]).first()
    if user is None or not user.is_active:
        raise _invalid()
    access = row["access_expires_at"]
    return user, math.inf if access is None else float(access)


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def _invalid() -> exceptions.AuthenticationFailed:
    return exceptions.AuthenticationFailed(
        "The ticket is unknown, spent, expired or for another session.", code="ticket_invalid"
    )
