"""A ``SESSION_ACCESS`` for the tests: anyone signed in reads sessions named
``public-*``; everything else falls back to the default rule."""

from __future__ import annotations

from typing import Any

from sse.sessions import owner_or_staff


def public_prefix(user: Any, session_id: str) -> bool:
    return session_id.startswith("public-") or owner_or_staff(user, session_id)
