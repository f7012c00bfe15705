"""Which ``PermissionRule`` decides a request, and what a valid rule is.

A rule applies to a request when its scope covers the session (the
session itself, the session owner's sessions, or every session), it has
not expired, its ``tool_name`` glob matches the tool and every glob of its
``arguments_match`` matches the named argument's string form (a string as
it is, anything else as compact JSON).  Of the rules that apply, a deny
beats an ask, which beats an allow; among equals the narrowest scope, then
the newest, is named in the audit.  The globs: ``globs``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from django.utils import timezone

from sse import select_rows

from .globs import argument_text
from .models import Effect, PermissionRule, Scope

# The SQL of ``filter(covers, unexpired)``: a rule of every session, of the
# session, or (with an owner) of its owner's sessions, and not expired.
_COVERS = "({scope} = %s OR ({scope} = %s AND {session_id} = %s))"
_COVERS_OWNER = (
    "({scope} = %s OR ({scope} = %s AND {session_id} = %s) OR ({scope} = %s AND {user} = %s))"
)
_UNEXPIRED = " AND ({expires_at} IS NULL OR {expires_at} > %s)"

PRECEDENCE = {Effect.DENY: 0, Effect.ASK: 1, Effect.ALLOW: 2}
NARROWNESS = {Scope.SESSION: 0, Scope.USER: 1, Scope.GLOBAL: 2}


def deciding_rule(
    session_id: str, tool_name: str, arguments: dict[str, Any], owner_id: Any
) -> PermissionRule | None:
    """The rule that decides the request, or None when none applies;
    ``owner_id``: the primary key of the session's owner, if any."""
    covers = [
        ("scope", Scope.GLOBAL.value),
        ("scope", Scope.SESSION.value),
        ("session_id", session_id),
    ]
    if owner_id is not None:
        covers += [("scope", Scope.USER.value), ("user", owner_id)]
    candidates = select_rows(
        PermissionRule,
        (_COVERS if owner_id is None else _COVERS_OWNER) + _UNEXPIRED,
        *covers,
        ("expires_at", timezone.now()),
    )
    applying = [rule for rule in candidates if matches(rule, tool_name, arguments)]
    if not applying:
        return None
    return min(
        applying,
        key=lambda rule: (
            PRECEDENCE[Effect(rule.effect)],
            NARROWNESS[Scope(rule.scope)],
            -rule.created_at.timestamp(),
            -rule.pk,
        ),
    )


def matches(rule: PermissionRule, tool_name: str, arguments: dict[str, Any]) -> bool:
    if not fnmatchcase(tool_name, rule.tool_name):
        return False
    for name, pattern in (rule.arguments_match or {}).items():
        if name not in arguments or not fnmatchcase(argument_text(arguments[name]), pattern):
            return False
    return True
