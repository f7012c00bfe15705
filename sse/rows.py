"""SQL for the hot paths, written once per model, lookups and database.

The ORM builds and compiles every query anew: 0.3-1 ms of CPU for the
queries of a stream open or an approval, where the database answers in a
tenth of that.  These functions give the answers the ORM's default manager
would, for the model's own table (no joins), with the SQL kept from the
first call.  A model whose default manager filters (``get_queryset``
overridden) is asked through the ORM instead, as are models with parents
(multi-table inheritance): the answer is always the ORM's.  The one
exception is ``select_rows``, whose WHERE the caller writes: it refuses
such models.

Lookups: ``field=value`` (``=``; ``None`` is refused, as it never equals)
and ``field__gt=value`` (``>``).  A foreign key takes the related primary
key (``owner=user.pk``); ``pk`` is the model's own.  Instances come back as
the ORM makes them (``Model.from_db``, the fields' converters applied), and
writes send no signals, as ``QuerySet.update`` does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.manager import BaseManager

M = TypeVar("M", bound=models.Model)

_OPERATORS = {"": "=", "gt": ">"}
_SQL: dict[tuple[Any, ...], str] = {}
_CONVERTERS: dict[tuple[str, type[models.Model]], list[tuple[int, list[Any], Any]]] = {}


def row_exists(model: type[models.Model], **where: Any) -> bool:
    """Whether a row of ``model`` matches: ``filter(**where).exists()``."""
    lookups = _lookups(model, where)
    if not _plain(model):
        return model._default_manager.filter(**where).exists()
    alias = router.db_for_read(model)
    connection = connections[alias]
    sql = _sql(
        ("exists", alias, model, tuple(where)),
        lambda: (
            f"SELECT 1 FROM {_table(model, connection)} {_where(lookups, connection)}"
            f" {connection.ops.limit_offset_sql(0, 1)}"
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, _params(lookups, where.values(), connection))
        return cursor.fetchone() is not None


def first_row(model: type[M], *, order_by: Sequence[str] = ("pk",), **where: Any) -> M | None:
    """The first matching row in ``order_by`` (ascending field names), or
    None: ``filter(**where).order_by(*order_by).first()``."""
    lookups = _lookups(model, where)
    order = [own_column(model, name) for name in order_by]
    if not _plain(model):
        return model._default_manager.filter(**where).order_by(*order_by).first()
    alias = router.db_for_read(model)
    connection = connections[alias]
    sql = _sql(
        ("first", alias, model, tuple(where), tuple(order_by)),
        lambda: (
            f"{_select(model, connection)} {_where(lookups, connection)}"
            f" ORDER BY {', '.join(_quoted(order, connection))}"
            f" {connection.ops.limit_offset_sql(0, 1)}"
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, _params(lookups, where.values(), connection))
        row = cursor.fetchone()
    return None if row is None else _instance(model, alias, connection, row)


def select_rows(model: type[M], where: str, *params: tuple[str, Any]) -> list[M]:
    """The rows of ``model``'s own table that ``where`` matches, in no order:
    SQL written by the caller, with ``{name}`` for the quoted column of
    field ``name`` and ``%s`` for each ``(field name, value)`` of ``params``,
    the value prepared as that field's.  For the apps' own models, whose
    default manager filters nothing (else TypeError)."""
    if not _plain(model):
        raise TypeError(f"select_rows(): {model.__name__}'s default manager filters rows")
    alias = router.db_for_read(model)
    connection = connections[alias]
    sql = _sql(
        ("select", alias, model, where),
        lambda: f"{_select(model, connection)} WHERE {where.format(**_columns(model, connection))}",
    )
    values = [
        own_column(model, name).get_db_prep_value(_key_of(value), connection)
        for name, value in params
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        rows = cursor.fetchall()
    return [_instance(model, alias, connection, row) for row in rows]


def _instance(model: type[M], alias: str, connection: BaseDatabaseWrapper, row: Sequence[Any]) -> M:
    """The instance the ORM makes of a row of every concrete field."""
    values = list(row)
    for index, converters, expression in _converters(model, alias, connection):
        for convert in converters:
            values[index] = convert(values[index], expression, connection)
    return model.from_db(alias, [field.attname for field in model._meta.concrete_fields], values)


def update_rows(model: type[models.Model], values: dict[str, Any], **where: Any) -> int:
    """Set ``values`` (field names; ``None`` is NULL; a foreign key takes a
    primary key or an instance) on the matching rows; how many matched:
    ``filter(**where).update(**values)``."""
    lookups = _lookups(model, where)
    fields = [own_column(model, name) for name in values]
    if not values:
        raise TypeError("update_rows() needs at least one value to set")
    if not _plain(model):
        return model._default_manager.filter(**where).update(**values)
    alias = router.db_for_write(model)
    connection = connections[alias]
    sql = _sql(
        ("update", alias, model, tuple(values), tuple(where)),
        lambda: (
            f"UPDATE {_table(model, connection)}"
            f" SET {', '.join(f'{column} = %s' for column in _quoted(fields, connection))}"
            f" {_where(lookups, connection)}"
        ),
    )
    changes = [
        None if value is None else field.get_db_prep_save(_key_of(value), connection)
        for field, value in zip(fields, values.values(), strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, changes + _params(lookups, where.values(), connection))
        return int(cursor.rowcount)


def _converters(
    model: type[models.Model], alias: str, connection: BaseDatabaseWrapper
) -> list[tuple[int, list[Any], Any]]:
    """(index, converters, column) of the fields whose values the database
    and the field convert, as ``SQLCompiler.get_converters`` finds them."""
    key = (alias, model)
    found = _CONVERTERS.get(key)
    if found is None:
        found = []
        for index, field in enumerate(model._meta.concrete_fields):
            column = field.get_col(model._meta.db_table)
            converters = connection.ops.get_db_converters(column) + column.get_db_converters(
                connection
            )
            if converters:
                found.append((index, converters, column))
        _CONVERTERS[key] = found
    return found


def _lookups(model: type[models.Model], where: dict[str, Any]) -> list[tuple[Any, str]]:
    """(field, SQL operator) for each ``name`` or ``name__lookup``."""
    if not where:
        raise TypeError("needs at least one field=value")
    lookups = []
    for name, value in where.items():
        field_name, _, lookup = name.partition("__")
        if lookup not in _OPERATORS:
            raise TypeError(f"{name}: only = and __gt are supported")
        if value is None:
            raise ValueError(f"{name}: compared with {_OPERATORS[lookup]}, None matches nothing")
        lookups.append((own_column(model, field_name), _OPERATORS[lookup]))
    return lookups


def own_column(model: type[models.Model], name: str) -> Any:
    """The field of ``name``, a column of ``model``'s own table (else TypeError)."""
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    if (
        field is None
        or not getattr(field, "concrete", False)
        or field.many_to_many
        or getattr(field, "model", None) is not model._meta.concrete_model
    ):
        raise TypeError(f"{name} is not a column of {model.__name__}'s table")
    return field


def _plain(model: type[models.Model]) -> bool:
    """Whether the default manager returns every row of the model's table."""
    manager = type(model._default_manager)
    return manager.get_queryset is BaseManager.get_queryset and not model._meta.parents


def _sql(key: tuple[Any, ...], write: Callable[[], str]) -> str:
    """The SQL kept under ``key``, written by ``write`` the first time."""
    sql = _SQL.get(key)
    if sql is None:
        sql = _SQL[key] = write()
    return sql


def _table(model: type[models.Model], connection: BaseDatabaseWrapper) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _quoted(fields: Sequence[Any], connection: BaseDatabaseWrapper) -> list[str]:
    return [connection.ops.quote_name(field.column) for field in fields]


def _columns(model: type[models.Model], connection: BaseDatabaseWrapper) -> dict[str, str]:
    """Each concrete field's name and its quoted column, in the model's order."""
    fields: Sequence[Any] = model._meta.concrete_fields
    return dict(zip((field.name for field in fields), _quoted(fields, connection), strict=True))


def _select(model: type[models.Model], connection: BaseDatabaseWrapper) -> str:
    """``SELECT`` every concrete column ``FROM`` the table, as ``_instance`` reads them."""
    listed = ", ".join(_columns(model, connection).values())
    return f"SELECT {listed} FROM {_table(model, connection)}"


def _where(lookups: list[tuple[Any, str]], connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    return "WHERE " + " AND ".join(f"{quote(field.column)} {op} %s" for field, op in lookups)


def _params(
    lookups: list[tuple[Any, str]], values: Any, connection: BaseDatabaseWrapper
) -> list[Any]:
    return [
        field.get_db_prep_value(_key_of(value), connection)
        for (field, _), value in zip(lookups, values, strict=True)
    ]


def _key_of(value: Any) -> Any:
    return value.pk if isinstance(value, models.Model) else value
