"""``sse.row_exists`` answers as the ORM's ``exists()`` would, and a backlog
provider with a probe is only asked when its probe says yes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from sse import BacklogMessage, row_exists
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
