"""The management commands: ``request_permission`` (success paths are in
``test_permissions_live.py``) and ``expire_permission_requests``."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from permissions.models import PermissionRequest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("args", "message"),
    [(["s1", "write_file", "{not json"], "not valid JSON"),
     (["s1", "", "{}"], "tool_name must be"),
     (["s1", "write_file", "[1]"], "arguments must be a dict"),
     (["bad id", "write_file", "{}"], "invalid session id"),
     (["s1", "write_file", "{}", "--timeout", "0"], "timeout must be a positive number")],
)  # fmt: skip
def test_request_permission_refuses_bad_input(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("request_permission", *args)
    assert not PermissionRequest.objects.exists()


def test_expire_permission_requests() -> None:
    now = timezone.now()

    def make(expires_in: float, status: str = "pending") -> PermissionRequest:
        return PermissionRequest.objects.create(
            session_id="s1",
            tool_name="t",
            status=status,
            requested_at=now - timedelta(seconds=100),
            expires_at=now + timedelta(seconds=expires_in),
        )

    overdue, waiting, decided = make(-1), make(60), make(-1, "approved")
    out = io.StringIO()
    call_command("expire_permission_requests", stdout=out)
    assert out.getvalue() == "1\n"
    statuses = {r.pk: r.status for r in PermissionRequest.objects.all()}
    assert statuses == {overdue.pk: "expired", waiting.pk: "pending", decided.pk: "approved"}
    out = io.StringIO()
    call_command("expire_permission_requests", stdout=out)
    assert out.getvalue() == "0\n"
