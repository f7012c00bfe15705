"""The permission history, read-only (an audit trail is not edited), and
the rules, which staff manage under Django's model permissions."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.html import format_html

from .models import PermissionRequest, PermissionRule, iso

# The project's user model may log in by email (or anything else).
USERNAME = get_user_model().USERNAME_FIELD

CSV_COLUMNS = [
    "request_id", "session_id", "owner", "tool_name", "arguments", "description", "status",
    "reason", "requested_at", "expires_at", "decided_at", "decided_by", "decided_by_rule",
    "client_ip", "user_agent", "latency_ms", "event_id", "tool_call_id", "key",
    "edited_arguments", "abort", "remember",
]  # fmt: skip


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PermissionRequest)
class PermissionRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "requested_at", "session_id", "owner", "tool_name", "status", "decider", "latency",
    ]  # fmt: skip
    list_filter = ["status", "tool_name", "requested_at"]
    search_fields = ["session_id", f"owner__{USERNAME}", f"decided_by__{USERNAME}", "tool_name"]
    list_select_related = ["owner", "decided_by"]
    date_hierarchy = "requested_at"
    actions = ["export_csv"]
    fieldsets = [
        (None, {"fields": ["request_id", "session_id", "owner", "tool_name", "pretty_arguments",
                           "description", "tool_call_id", "key"]}),
        ("Decision", {"fields": ["status", "reason", "pretty_edited_arguments", "abort",
                                 "remember", "decided_by", "decided_by_rule", "requested_at",
                                 "expires_at", "decided_at", "latency"]}),
        ("Answering client", {"fields": ["client_ip", "user_agent", "event_id", "announced"]}),
    ]  # fmt: skip
    readonly_fields = ["pretty_arguments", "pretty_edited_arguments", "latency"]

    @admin.display(description="arguments")
    def pretty_arguments(self, obj: PermissionRequest) -> str:
        return _pretty(obj.arguments)

    @admin.display(description="edited arguments")
    def pretty_edited_arguments(self, obj: PermissionRequest) -> str:
        return "—" if obj.edited_arguments is None else _pretty(obj.edited_arguments)

    @admin.display(description="decided by", ordering=f"decided_by__{USERNAME}")
    def decider(self, obj: PermissionRequest) -> str:
        if obj.decided_by is not None:
            return obj.decided_by.get_username()
        return obj.decided_by_rule or "—"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: PermissionRequest) -> str:
        if obj.latency_ms is None:
            return "—"
        return f"{obj.latency_ms / 1000:.1f} s"

    @admin.action(description="Export selected requests as CSV", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[PermissionRequest]
    ) -> StreamingHttpResponse:
        rows = queryset.select_related("owner", "decided_by").order_by("requested_at", "id")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="permission-requests-{stamp}.csv"'
        return response


@admin.register(PermissionRule)
class PermissionRuleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rules deciding requests before a person is asked; people's "remember"
    choices are rules too.  Add, change and delete need the model's permissions."""

    list_display = [
        "tool_name", "effect", "scope", "session_id", "user", "arguments_match", "expires_at",
        "created_by", "created_at",
    ]  # fmt: skip
    list_filter = ["effect", "scope", "created_at"]
    search_fields = ["session_id", "tool_name", f"user__{USERNAME}", f"created_by__{USERNAME}"]
    list_select_related = ["user", "created_by"]
    raw_id_fields = ["user"]
    fields = [
        "effect", "tool_name", "arguments_match", "scope", "session_id", "user", "reason",
        "expires_at", "created_by", "created_at", "request",
    ]  # fmt: skip
    readonly_fields = ["created_by", "created_at", "request"]

    def save_model(
        self, request: HttpRequest, obj: PermissionRule, form: Any, change: bool
    ) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]  # staff: authenticated
        super().save_model(request, obj, form, change)


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)


class _Echo:
    """A file whose ``write`` returns the line, for streaming ``csv.writer``."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(rows: QuerySet[PermissionRequest]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for row in rows.iterator(chunk_size=500):
        values = [
            row.request_id, row.session_id, row.owner.get_username() if row.owner else "",
            row.tool_name, json.dumps(row.arguments, ensure_ascii=False, sort_keys=True),
            row.description, row.status, row.reason, iso(row.requested_at), iso(row.expires_at),
            iso(row.decided_at) if row.decided_at else "",
            row.decided_by.get_username() if row.decided_by else "", row.decided_by_rule,
            row.client_ip or "", row.user_agent, row.latency_ms if row.latency_ms is not None
            else "", row.event_id, row.tool_call_id, row.key or "",
            "" if row.edited_arguments is None else json.dumps(
                row.edited_arguments, ensure_ascii=False, sort_keys=True),
            row.abort, row.remember,
        ]  # fmt: skip
        yield writer.writerow([_cell(value) for value in values])


def _cell(value: object) -> str:
    text = str(value)
    # Spreadsheets run cells starting like a formula; agents and users write
    # these fields, so neutralise them (OWASP "CSV injection").
    if text.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + text
    return text
