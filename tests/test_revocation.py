"""A stream ends with ``{"type": "access_revoked"}`` within
``HEARTBEAT_INTERVAL`` once its user may no longer read its session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sse.models import StreamSession
from sse.testing import StreamEnded
from tests.conftest import MakeSession, MakeUser
from tests.streaming import MakeStack, collect_types, until_connected

RunOrm = Callable[[Callable[[], Any]], Any]


@pytest.fixture
def run_orm(_run_orm: RunOrm) -> RunOrm:
    return _run_orm


def _deactivate(user: Any) -> None:
    type(user).objects.filter(pk=user.pk).update(is_active=False)


def _delete_session(user: Any) -> None:
    StreamSession.objects.filter(owner=user).delete()


def _delete_user(user: Any) -> None:
    type(user).objects.filter(pk=user.pk).delete()


@pytest.mark.parametrize("kind", ["memory", "redis"])
@pytest.mark.parametrize("revoke", [_deactivate, _delete_session, _delete_user])
async def test_a_revoked_stream_ends_within_the_heartbeat_interval(
    make_stack: MakeStack,
    make_user: MakeUser,
    make_session: MakeSession,
    run_orm: RunOrm,
    kind: str,
    revoke: Callable[[Any], None],
) -> None:
    stack = make_stack(kind, HEARTBEAT_INTERVAL=1)
    user, token = make_user()
    bystander, other_token = make_user()
    sid, other_sid = make_session(user).session_id, make_session(bystander).session_id
    async with stack.open(sid, token) as stream, stack.open(other_sid, other_token) as other:
        await until_connected(stream)
        await until_connected(other)
        run_orm(lambda: revoke(user))
        revoked = await collect_types(stream, 1, "access_revoked", timeout=3)
        assert revoked[0].id is None
        with pytest.raises(StreamEnded):
            await stream.next_event(timeout=2)
        # The others' streams carry on.
        assert len(await collect_types(other, 2, "heartbeat", timeout=3)) == 2


@pytest.mark.django_db
@pytest.mark.parametrize("flags_are_fields", [True, False])
def test_the_default_access_of_many_streams_is_checked_a_batch_per_query(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch, flags_are_fields: bool
) -> None:
    """Every interval each loop checks all of its open streams: under the
    default ``SESSION_ACCESS``, in a query for the users and one per 500
    sessions, whatever the number of streams; and with its answers.  The
    users' ``is_active`` and ``is_staff`` are read as columns, or from the
    users where a user model has them otherwise."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sse._stream import revocation
    from sse._stream.revocation import refused_pairs

    assert revocation._flags_are_fields(django_user_model)
    if not flags_are_fields:
        monkeypatch.setattr(revocation, "_flags_are_fields", lambda model: False)

    owner = django_user_model.objects.create(username="owner")
    staff = django_user_model.objects.create(username="staff", is_staff=True)
    other = django_user_model.objects.create(username="other")
    gone = django_user_model.objects.create(username="gone", is_active=False)
    sids = [f"batch-{n:04d}" for n in range(600)]
    StreamSession.objects.bulk_create(StreamSession(session_id=s, owner=owner) for s in sids)
    pairs = {(user.pk, sid) for user in (owner, staff) for sid in sids}
    pairs |= {(other.pk, sids[0]), (gone.pk, sids[1]), (owner.pk, "batch-missing")}
    with CaptureQueriesContext(connection) as queries:
        refused = refused_pairs(pairs)
    assert refused == {(other.pk, sids[0]), (gone.pk, sids[1]), (owner.pk, "batch-missing")}
    assert len(queries) == 3  # the users, then the sessions in two batches
