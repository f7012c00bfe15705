"""Creating sessions and deciding who may read them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.db import connections, models, router
from django.utils.module_loading import import_string

from ._stream.events import check_session_id, is_valid_session_id
from .conf import conf
from .exceptions import InvalidSessionId, SessionNotFound
from .models import StreamSession

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


_EXISTS_SQL: dict[tuple[str, type[models.Model], tuple[str, ...]], str] = {}


def row_exists(model: type[models.Model], **equal: Any) -> bool:
    """Whether a row of ``model`` has these field values: ``field=value``,
    equality only, ``None`` refused; a foreign key takes the related
    primary key (``owner=user.pk``), ``pk`` the model's own.

    The same answer as ``model._default_manager.filter(**equal).exists()``
    for a manager that filters nothing, without building the query each
    time: the SQL is written once per model, fields and database, and a
    stream open, which asks this on every (re)connect, spends 10 µs where
    the ORM spends 150.  Fields of the model's own table only (no joins, no
    parent model's fields under multi-table inheritance).
    """
    if not equal:
        raise TypeError("row_exists() needs at least one field=value")
    if any(value is None for value in equal.values()):
        raise ValueError("row_exists() compares with =; None is never equal")
    alias = router.db_for_read(model)
    connection = connections[alias]
    fields = [_own_field(model, name) for name in equal]
    key = (alias, model, tuple(equal))
    sql = _EXISTS_SQL.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        where = " AND ".join(f"{quote(field.column)} = %s" for field in fields)
        limit = connection.ops.limit_offset_sql(0, 1)
        sql = f"SELECT 1 FROM {quote(model._meta.db_table)} WHERE {where} {limit}"
        _EXISTS_SQL[key] = sql
    params = [
        field.get_db_prep_value(value, connection)
        for field, value in zip(fields, equal.values(), strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def _own_field(model: type[models.Model], name: str) -> Any:
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    if (
        field is None
        or not getattr(field, "concrete", False)
        or field.many_to_many
        or getattr(field, "model", None) is not model._meta.concrete_model
    ):
        raise TypeError(f"row_exists(): {name} is not a column of {model.__name__}'s table")
    return field


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
