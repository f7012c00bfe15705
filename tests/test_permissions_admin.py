"""The permission history in the Django admin: readable, searchable, exportable, not editable."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from permissions.models import PermissionRequest, PermissionRule

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/permissions/permissionrequest/"


@pytest.fixture
def history() -> dict[str, PermissionRequest]:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    now = timezone.now()
    rows = {
        "approved": PermissionRequest.objects.create(
            session_id="sess-alice",
            owner=alice,
            tool_name="write_file",
            arguments={"path": "/tmp/<b>x</b>", "mode": "w"},
            description="<script>x</script>",
            requested_at=now - timedelta(seconds=10),
            expires_at=now + timedelta(minutes=5),
        ),
        "policy": PermissionRequest.objects.create(
            session_id="sess-bob",
            owner=bob,
            tool_name="read_file",
            status="approved",
            arguments={"path": "=cmd|' /C calc'!A0"},
            decided_by_rule="policy:x.y",
            requested_at=now - timedelta(days=40),
            expires_at=now,
            decided_at=now,
            latency_ms=0,
        ),
        "pending": PermissionRequest.objects.create(
            session_id="sess-bob",
            owner=bob,
            tool_name="delete_file",
            requested_at=now,
            expires_at=now + timedelta(minutes=5),
        ),
    }
    rows["approved"].decide(True, reason="ok", user=bob, client_ip="192.0.2.7", user_agent="UA/1")
    PermissionRule.objects.create(session_id="sess-alice", tool_name="write_file", created_by=bob)
    return rows


@pytest.fixture
def staff(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def texts(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return str(response.content.decode())


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def test_changelist_columns(staff: Client, history: dict[str, PermissionRequest]) -> None:
    page = texts(staff.get(CHANGELIST))
    for column in (
        "Requested at",
        "Session id",
        "Owner",
        "Tool name",
        "Status",
        "Decided by",
        "Latency",
    ):
        assert column.lower() in page.lower(), column
    assert "sess-alice" in page
    assert "policy:x.y" in page  # decided by a rule
    assert "bob" in page  # decided by a person
    assert "3 permission requests" in page
    # Read-only: no "add" button, no bulk delete.
    assert "/admin/permissions/permissionrequest/add/" not in page
    assert "delete_selected" not in page
    assert "export_csv" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [("status__exact=approved", {"write_file", "read_file"}),
     ("status__exact=pending", {"delete_file"}),
     ("tool_name=read_file", {"read_file"}),
     ("requested_at__gte={today}", {"write_file", "delete_file"}),
     ("q=alice", {"write_file"}),
     ("q=sess-bob", {"read_file", "delete_file"}),
     ("q=delete", {"delete_file"}),
     ("requested_at__year={year}&requested_at__month={month}", {"write_file", "delete_file"})],
)  # fmt: skip
def test_filters_and_search(
    staff: Client, history: dict[str, PermissionRequest], query: str, expected: set[str]
) -> None:
    now = timezone.localtime()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # As the date filter's own "Today" link writes it.
    query = query.format(today=quote(str(midnight)), year=now.year, month=now.month)
    page = texts(staff.get(f"{CHANGELIST}?{query}"))
    shown = {
        name
        for name in ("write_file", "read_file", "delete_file")
        if f'<td class="field-tool_name">{name}</td>' in page
    }
    assert shown == expected


def test_filter_sidebar_and_date_hierarchy(staff: Client, history: Any) -> None:
    page = texts(staff.get(CHANGELIST))
    assert "By status" in page
    assert "By tool name" in page
    assert "By requested at" in page
    assert "requested_at__year=" in page


def test_detail_is_read_only_with_pretty_escaped_json(
    staff: Client, history: dict[str, PermissionRequest]
) -> None:
    row = history["approved"]
    url = f"{CHANGELIST}{row.pk}/change/"
    page = texts(staff.get(url))
    assert '<pre style="white-space: pre-wrap">{\n  &quot;mode&quot;: &quot;w&quot;,\n' in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page
    assert "<script>x</script>" not in page
    for value in ("192.0.2.7", "UA/1", "bob", str(row.request_id)):
        assert value in page
    assert 'name="_save"' not in page
    assert staff.post(url, {"reason": "edited"}).status_code == 403
    assert staff.get(f"{CHANGELIST}add/").status_code == 403
    assert staff.get(f"{CHANGELIST}{row.pk}/delete/").status_code == 403
    row.refresh_from_db()
    assert row.reason == "ok"


def test_export_csv(staff: Client, history: dict[str, PermissionRequest]) -> None:
    selected = [history["approved"].pk, history["policy"].pk]
    response = staff.post(
        CHANGELIST, {"action": "export_csv", "_selected_action": selected, "index": 0}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="permission-requests-')
    content = body(response)
    rows = list(csv.DictReader(io.StringIO(content)))
    assert [r["tool_name"] for r in rows] == ["read_file", "write_file"]  # oldest first
    policy, approved = rows
    assert approved["decided_by"] == "bob"
    assert approved["owner"] == "alice"
    assert approved["client_ip"] == "192.0.2.7"
    assert approved["arguments"] == '{"mode": "w", "path": "/tmp/<b>x</b>"}'
    assert approved["request_id"] == str(history["approved"].request_id)
    assert policy["decided_by_rule"] == "policy:x.y"
    assert policy["latency_ms"] == "0"
    # A cell that a spreadsheet would run as a formula is neutralised.
    assert policy["arguments"] == '{"path": "=cmd|\' /C calc\'!A0"}'
    history["policy"].description = "=HYPERLINK(1)"
    history["policy"].reason = "-2+3"
    history["policy"].save()
    response = staff.post(
        CHANGELIST, {"action": "export_csv", "_selected_action": [history["policy"].pk]}
    )
    (row,) = csv.DictReader(io.StringIO(body(response)))
    assert (row["description"], row["reason"]) == ("'=HYPERLINK(1)", "'-2+3")


def test_only_staff(client: Client, history: Any) -> None:
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    client.force_login(User.objects.create_user("plain"))
    assert client.get(CHANGELIST).status_code == 302


RULES = "/admin/permissions/permissionrule/"


def rule_form(**fields: str) -> dict[str, str]:
    return {
        "effect": "deny", "tool_name": "shell_*", "arguments_match": "", "scope": "global",
        "session_id": "", "user": "", "reason": "", "expires_at_0": "", "expires_at_1": "",
    } | fields  # fmt: skip


def test_rules_can_be_revoked(staff: Client, history: Any) -> None:
    page = texts(staff.get(RULES))
    assert "sess-alice" in page
    rule = PermissionRule.objects.get()
    response = staff.post(f"{RULES}{rule.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not PermissionRule.objects.exists()


def test_staff_add_a_rule(staff: Client) -> None:
    response = staff.post(
        f"{RULES}add/",
        rule_form(arguments_match='{"cmd": "rm *"}', reason="No deleting from the agent."),
    )
    assert response.status_code == 302, texts(response)
    rule = PermissionRule.objects.get()
    assert (rule.effect, rule.scope, rule.tool_name, rule.arguments_match) == (
        "deny", "global", "shell_*", {"cmd": "rm *"},
    )  # fmt: skip
    assert rule.created_by is not None
    assert rule.created_by.get_username() == "admin"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tool_name": "fs_[abc"}, "is never closed"),
        ({"arguments_match": '["rm *"]'}, "An object of argument names and globs"),
        ({"arguments_match": '{"cmd": 5}'}, "cmd: A glob is a non-empty string."),
        ({"arguments_match": "{not json"}, "Enter a valid JSON."),
        ({"scope": "session"}, "A session rule names a session"),
        ({"scope": "global", "session_id": "s-1"}, "A session rule names a session"),
        ({"effect": "maybe"}, "Select a valid choice."),
    ],
)
def test_a_bad_rule_is_refused_with_a_reason(
    staff: Client, fields: dict[str, str], message: str
) -> None:
    response = staff.post(f"{RULES}add/", rule_form(**fields))
    assert response.status_code == 200  # the form again, with the errors
    assert message in texts(response)
    assert not PermissionRule.objects.exists()


def test_managing_rules_needs_the_model_permissions(client: Client) -> None:
    from django.contrib.auth.models import Permission

    clerk = User.objects.create_user("clerk", is_staff=True)
    client.force_login(clerk)
    assert client.get(RULES).status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="view_permissionrule"))
    page = texts(client.get(RULES))
    assert f"{RULES}add/" not in page
    assert client.post(f"{RULES}add/", rule_form()).status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="add_permissionrule"))
    assert client.post(f"{RULES}add/", rule_form()).status_code == 302
    assert PermissionRule.objects.get().created_by == clerk
