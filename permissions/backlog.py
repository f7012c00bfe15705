"""Pending requests are shown on every (re)connect, even after their
``permission_request`` event has left the session's buffer."""

from __future__ import annotations

from django.utils import timezone

from sse import BacklogMessage, row_exists

from .models import PermissionRequest, Status, milliseconds


def has_pending(session_id: str) -> bool:
    """The provider's probe: any pending row, expired or not (cheap)."""
    return row_exists(PermissionRequest, session_id=session_id, status=Status.PENDING.value)


def pending_requests(session_id: str) -> list[BacklogMessage]:
    """The ``sse.backlog`` provider: unexpired pending requests, oldest first."""
    requests = PermissionRequest.objects.filter(
        session_id=session_id, status=Status.PENDING, expires_at__gt=timezone.now()
    ).order_by("requested_at", "id")
    return [
        BacklogMessage(
            type="permission_request",
            data=request.request_message(),
            timestamp_ms=milliseconds(request.requested_at),
            # Unknown for a moment after the row is written: the stream may
            # then show the request twice, which beats not showing it.
            event_id=request.event_id or None,
        )
        for request in requests
    ]
