"""``permission_cleared``: every tab closes its dialog and the waiting
agent, in whatever process, wakes up.  Published from here only."""

from __future__ import annotations

import logging

from sse import SSEError, notifier

from .models import PermissionRequest

logger = logging.getLogger(__name__)


def announce(request: PermissionRequest) -> bool:
    """Publish the request's decision; False (logged) if the broker refused.

    The decision is recorded either way: the agent re-reads the row on its
    own, and tabs stop showing the request when they reconnect (only
    pending requests are re-sent)."""
    try:
        notifier.send(request.session_id, "permission_cleared", request.cleared_message())
    except SSEError:
        logger.exception("Could not publish permission_cleared of %s", request.request_id)
        return False
    return True


async def aannounce(request: PermissionRequest) -> bool:
    """:func:`announce` from async code."""
    try:
        await notifier.asend(request.session_id, "permission_cleared", request.cleared_message())
    except SSEError:
        logger.exception("Could not publish permission_cleared of %s", request.request_id)
        return False
    return True
