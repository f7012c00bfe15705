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
