"""Creating sessions and deciding who may read them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from ._stream.events import check_session_id, is_valid_session_id
from .conf import conf
from .exceptions import InvalidSessionId, SessionNotFound
from .models import StreamSession
from .rows import row_exists

SessionAccess = Callable[[Any, str], bool]


class SessionTaken(Exception):
    """The session id already belongs to another user."""


def get_or_create_session(
    owner: Any, session_id: str | None = None, title: str = ""
) -> tuple[StreamSession, bool]:
    """The session ``session_id`` of ``owner``, and whether this call made it.

    Agent code calls this too, e.g. before starting a run for a user; without
    ``session_id`` a random one is chosen.
    """
    session_id = check_session_id(session_id) if session_id is not None else uuid.uuid4().hex
    session, created = StreamSession.objects.get_or_create(
        session_id=session_id, defaults={"owner": owner, "title": title}
    )
    if not created and session.owner_id != owner.pk:
        raise SessionTaken(session_id)
    return session, created


def owner_or_staff(user: Any, session_id: str) -> bool:
    """The default ``SESSION_ACCESS``: the owner, or any staff user."""
    if user.is_staff:
        return row_exists(StreamSession, session_id=session_id)
    return row_exists(StreamSession, session_id=session_id, owner=user.pk)


def can_read(user: Any, session_id: str) -> bool:
    access: SessionAccess = import_string(conf.SESSION_ACCESS)
    return bool(access(user, session_id))


def readable_session(request: Any, session_id: str) -> str:
    """``session_id`` if the caller of a DRF view may read it; raises the
    DRF errors for 400 (malformed) or 404 (missing, or someone else's)."""
    from .errors import api_error

    if not is_valid_session_id(session_id):
        raise api_error(InvalidSessionId)
    if not can_read(request.user, session_id):
        raise api_error(SessionNotFound)
    return session_id
