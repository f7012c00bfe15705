"""``sse.row_exists``, ``first_row`` and ``update_rows`` answer as the ORM
would, and a backlog provider with a probe is only asked when its probe says
yes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Q
from django.utils import timezone

from permissions.models import PermissionRequest, PermissionRule, Scope, Status
from sse import BacklogMessage, first_row, row_exists, select_rows, update_rows
from sse._stream import backlog
from sse.models import StreamSession

pytestmark = pytest.mark.django_db


def test_row_exists_agrees_with_the_orm() -> None:
    owner = get_user_model().objects.create_user("owner")
    other = get_user_model().objects.create_user("other")
    StreamSession.objects.create(session_id="ws-1", owner=owner)
    asks: list[dict[str, Any]] = [
        {"session_id": "ws-1"},
        {"session_id": "ws-2"},
        {"session_id": "ws-1", "owner": owner.pk},
        {"session_id": "ws-1", "owner": other.pk},
        {"session_id": "ws-1", "owner": 10**9},
        {"session_id": "ws-1'; DROP TABLE sse_streamsession; --"},
    ]
    for equal in asks:
        assert row_exists(StreamSession, **equal) == StreamSession.objects.filter(**equal).exists()
    assert StreamSession.objects.count() == 1
    session = StreamSession.objects.get()
    assert row_exists(StreamSession, pk=session.pk)
    assert not row_exists(StreamSession, pk=session.pk + 1)


def test_row_exists_refuses_what_it_cannot_answer_as_the_orm_would() -> None:
    with pytest.raises(TypeError, match="at least one"):
        row_exists(StreamSession)
    with pytest.raises(ValueError, match="None"):
        row_exists(StreamSession, owner=None)
    with pytest.raises(TypeError, match="not a column"):
        row_exists(get_user_model(), groups=1)  # many-to-many
    with pytest.raises(TypeError, match="not a column"):
        row_exists(get_user_model(), stream_sessions=1)  # a reverse relation


def _fields(instance: models.Model | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def _request(session_id: str, minutes: int, **fields: Any) -> PermissionRequest:
    now = timezone.now()
    return PermissionRequest.objects.create(
        session_id=session_id,
        tool_name="write_file",
        arguments={"path": "/tmp/a", "lines": [1, 2], "note": None},
        requested_at=now - timedelta(minutes=minutes),
        expires_at=now + timedelta(minutes=10 - minutes),
        **fields,
    )


@pytest.mark.postgres
def test_first_row_gives_the_instance_the_orm_gives() -> None:
    owner = get_user_model().objects.create_user("owner")
    older = _request("ws-1", 5, owner=owner)
    newer = _request("ws-1", 1, tool_call_id="call_1")
    expired = _request("ws-1", 20)
    asks: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        ({"session_id": "ws-1"}, ("pk",)),
        ({"session_id": "ws-1"}, ("requested_at", "id")),
        ({"session_id": "ws-1", "status": Status.PENDING.value}, ("requested_at",)),
        ({"session_id": "ws-1", "expires_at__gt": timezone.now()}, ("requested_at",)),
        ({"request_id": newer.request_id}, ("pk",)),
        ({"request_id": str(expired.request_id)}, ("pk",)),  # as a string, too
        ({"request_id": uuid.uuid4()}, ("pk",)),
        ({"session_id": "ws-1", "owner": owner.pk}, ("pk",)),
        ({"session_id": "ws-2"}, ("pk",)),
    ]
    for where, order_by in asks:
        ours = first_row(PermissionRequest, order_by=order_by, **where)
        orm = PermissionRequest.objects.filter(**where).order_by(*order_by).first()
        assert _fields(ours) == _fields(orm), where
    found = first_row(PermissionRequest, request_id=older.request_id)
    assert found is not None
    assert found.arguments == {"path": "/tmp/a", "lines": [1, 2], "note": None}
    assert found.request_id == older.request_id  # a UUID, as the ORM converts it
    assert found.owner == owner
    assert found._state.adding is False
    user = first_row(get_user_model(), username="owner")
    assert _fields(user) == _fields(get_user_model().objects.get(pk=owner.pk))


@pytest.mark.postgres
def test_select_rows_finds_the_rows_the_orms_filter_finds() -> None:
    owner = get_user_model().objects.create_user("owner")
    now = timezone.now()
    made = [
        PermissionRule.objects.create(scope=Scope.GLOBAL, tool_name="*"),
        PermissionRule.objects.create(scope=Scope.SESSION, session_id="ws-1", tool_name="a*"),
        PermissionRule.objects.create(scope=Scope.SESSION, session_id="ws-2", tool_name="b"),
        PermissionRule.objects.create(
            scope=Scope.USER, user=owner, tool_name="c", arguments_match={"x": "1*"}
        ),
        PermissionRule.objects.create(
            scope=Scope.GLOBAL, tool_name="d", expires_at=now - timedelta(seconds=1)
        ),
        PermissionRule.objects.create(
            scope=Scope.GLOBAL, tool_name="e", expires_at=now + timedelta(hours=1)
        ),
    ]
    where = (
        "({scope} = %s OR ({scope} = %s AND {user} = %s))"
        " AND ({expires_at} IS NULL OR {expires_at} > %s)"
    )
    ours = select_rows(
        PermissionRule,
        where,
        ("scope", "global"),
        ("scope", "user"),
        ("user", owner),
        ("expires_at", now),
    )
    orm = PermissionRule.objects.filter(
        Q(scope="global") | Q(scope="user", user=owner),
        Q(expires_at__isnull=True) | Q(expires_at__gt=now),
    )
    assert sorted(map(_fields, ours), key=str) == sorted(map(_fields, orm), key=str)
    assert {rule.tool_name for rule in ours} == {"*", "c", "e"}
    assert next(rule for rule in ours if rule.tool_name == "c").arguments_match == {"x": "1*"}
    assert len(made) == PermissionRule.objects.count()
    assert select_rows(PermissionRule, "{session_id} = %s", ("session_id", "ws-1")) == [made[1]]


@pytest.mark.postgres
def test_update_rows_changes_what_the_orms_update_changes() -> None:
    person = get_user_model().objects.create_user("person")
    pending = _request("ws-1", 1)
    late = _request("ws-1", 20)
    now = timezone.now()
    decided = {
        "status": Status.APPROVED.value,
        "decided_by": person,
        "decided_at": now,
        "edited_arguments": {"path": "/tmp/b"},
        "client_ip": None,
    }
    still_open = {"status": Status.PENDING.value, "expires_at__gt": now}
    assert update_rows(PermissionRequest, decided, pk=late.pk, **still_open) == 0
    assert update_rows(PermissionRequest, decided, pk=pending.pk, **still_open) == 1
    assert update_rows(PermissionRequest, decided, pk=pending.pk, **still_open) == 0
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by, pending.decided_at) == ("approved", person, now)
    assert pending.edited_arguments == {"path": "/tmp/b"}
    assert update_rows(PermissionRequest, {"edited_arguments": None}, pk=pending.pk) == 1
    assert PermissionRequest.objects.filter(pk=pending.pk, edited_arguments__isnull=True).exists()
    late.refresh_from_db()
    assert late.status == Status.PENDING


def test_a_manager_that_filters_is_asked_through_the_orm(monkeypatch: pytest.MonkeyPatch) -> None:
    owner = get_user_model().objects.create_user("owner")
    StreamSession.objects.create(session_id="ws-shown", owner=owner)
    StreamSession.objects.create(session_id="ws-hidden", owner=owner, title="hidden")
    plain = models.Manager.get_queryset

    def get_queryset(self: models.Manager[Any]) -> Any:
        rows = plain(self)
        return rows.exclude(title="hidden") if self.model is StreamSession else rows

    monkeypatch.setattr(models.Manager, "get_queryset", get_queryset)
    assert row_exists(StreamSession, session_id="ws-shown")
    assert not row_exists(StreamSession, session_id="ws-hidden")
    assert first_row(StreamSession, session_id="ws-hidden") is None
    assert update_rows(StreamSession, {"title": "seen"}, session_id="ws-hidden") == 0
    assert update_rows(StreamSession, {"title": "seen"}, session_id="ws-shown") == 1
    with pytest.raises(TypeError, match="filters rows"):
        select_rows(StreamSession, "{title} = %s", ("title", "hidden"))


def test_rows_refuse_lookups_they_cannot_answer_as_the_orm_would() -> None:
    with pytest.raises(TypeError, match="only = and __gt"):
        first_row(StreamSession, session_id__startswith="ws")
    with pytest.raises(TypeError, match="not a column"):
        first_row(get_user_model(), order_by=("groups",), username="ws")  # many-to-many
    with pytest.raises(TypeError, match="at least one value"):
        update_rows(StreamSession, {}, session_id="ws")
    with pytest.raises(ValueError, match="None"):
        update_rows(StreamSession, {"title": ""}, owner=None)


def test_a_provider_is_asked_only_when_its_probe_says_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backlog, "_providers", {})
    asked: list[str] = []

    def provider(session_id: str) -> list[BacklogMessage]:
        asked.append(session_id)
        return [BacklogMessage("reminder", {"for": session_id}, 0)]

    def unprobed(session_id: str) -> list[BacklogMessage]:
        return []

    backlog.register(provider, probe=lambda session_id: session_id == "busy")
    backlog.register(unprobed)
    assert backlog.waiting("idle") == [unprobed]
    assert backlog.waiting("busy") == [provider, unprobed]
    assert backlog.collect("busy", backlog.waiting("busy"))[0].data == {"for": "busy"}
    assert backlog.collect("idle", backlog.waiting("idle")) == []
    assert asked == ["busy"]
