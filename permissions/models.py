"""Permission requests and their single decision, kept as the audit trail."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from sse import update_rows

from . import metrics
from .globs import validate_arguments_match, validate_glob


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class PermissionRequest(models.Model):
    """One tool call an agent asked about, and the one answer it got."""

    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session_id = models.CharField(max_length=128)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="permission_requests",
        help_text="The owner of the session when the request was made.",
    )
    tool_name = models.CharField(max_length=200)
    arguments = models.JSONField(
        default=dict, blank=True, help_text="The arguments the agent asked to run the tool with."
    )
    description = models.TextField(blank=True)
    tool_call_id = models.CharField(
        max_length=200, blank=True, help_text="The agent framework's id of the tool call."
    )
    # NULL, not "": requests without a key are exempt from the unique constraint.
    key = models.CharField(  # noqa: DJ001
        max_length=200,
        null=True,
        blank=True,
        help_text="The agent's key: asking again with it re-attaches to this request.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True)
    edited_arguments = models.JSONField(
        null=True,
        blank=True,
        help_text="The arguments the person approved the tool with, when they edited them.",
    )
    abort = models.BooleanField(
        default=False, help_text="The person denied it and stopped the whole run."
    )
    remember = models.CharField(
        max_length=16,
        choices=[("", "No"), ("session", "This session"), ("user", "Always for this user")],
        blank=True,
        help_text="What the person asked to remember the approval for.",
    )
    requested_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="permission_decisions",
    )
    decided_by_rule = models.CharField(
        max_length=300,
        blank=True,
        help_text='"rule:<id>" (a PermissionRule), "policy:<dotted path>", or empty when a '
        "person answered or nobody did.",
    )
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    latency_ms = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Milliseconds from the request to its decision."
    )
    event_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="Id of the permission_request event, so streams do not show it twice.",
    )
    announced = models.BooleanField(
        default=False,
        help_text="permission_cleared was published for the decision (one made while the "
        "broker was unreachable is published once it is back).",
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [
            # "The oldest pending request of a session" and the stream backlog.
            models.Index(fields=["session_id", "status", "requested_at"], name="perm_session_idx"),
            models.Index(fields=["status"], name="perm_status_idx"),
            models.Index(fields=["tool_name"], name="perm_tool_idx"),
            models.Index(fields=["requested_at"], name="perm_requested_idx"),
            # Decisions still to announce (``announce.Resender``).
            models.Index(fields=["announced", "decided_at"], name="perm_unannounced_idx"),
        ]
        constraints = [
            # Exactly one request per key and session (NULL keys are all distinct).
            models.UniqueConstraint(fields=["session_id", "key"], name="perm_request_key"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} in {self.session_id} ({self.status})"

    @property
    def approved(self) -> bool:
        return self.status == Status.APPROVED

    @property
    def edited(self) -> bool:
        return self.edited_arguments is not None

    @property
    def final_arguments(self) -> dict[str, Any]:
        """What the tool should run with: the person's edits, or the original."""
        edited: dict[str, Any] | None = self.edited_arguments
        return self.arguments if edited is None else edited

    def decide(
        self,
        approved: bool,
        *,
        reason: str = "",
        user: Any = None,
        rule: str = "",
        client_ip: str | None = None,
        user_agent: str = "",
        arguments: dict[str, Any] | None = None,
        abort: bool = False,
        remember: str = "",
    ) -> bool:
        """Record the answer; True if this call made the decision.

        ``arguments`` (approvals only) are the person's edits; ``abort``
        (denials only) stops the whole run.  False when the request was no
        longer pending (someone else won; the instance is reloaded with the
        decision that stands) or has expired.
        """
        return self._close(
            Status.APPROVED if approved else Status.DENIED,
            unexpired_only=True,
            reason=reason,
            decided_by=user,
            decided_by_rule=rule,
            client_ip=client_ip,
            user_agent=user_agent[:512],
            edited_arguments=arguments if approved else None,
            abort=abort and not approved,
            remember=remember if approved else "",
        )

    def expire(self) -> bool:
        """Pending -> expired; True if this call did it."""
        seconds = (self.expires_at - self.requested_at).total_seconds()
        return self._close(Status.EXPIRED, reason=f"No answer within {seconds:g} seconds.")

    def cancel(self, reason: str = "The agent stopped waiting.") -> bool:
        """Pending -> cancelled; True if this call did it."""
        return self._close(Status.CANCELLED, reason=reason)

    def _close(self, status: str, unexpired_only: bool = False, **fields: Any) -> bool:
        # The only way out of "pending" is this single conditional UPDATE, never
        # read-then-write: concurrent answers from tabs, workers and processes
        # race in the database and exactly one of them matches the row.
        now = timezone.now()
        where: dict[str, Any] = {"pk": self.pk, "status": Status.PENDING.value}
        if unexpired_only:
            where["expires_at__gt"] = now
        fields |= {
            "status": str(status),
            "decided_at": now,
            "latency_ms": max(0, int((now - self.requested_at).total_seconds() * 1000)),
            # Optimistic: whoever closes it announces it next, and says so
            # if the broker refuses (``announce``).
            "announced": True,
        }
        won = update_rows(PermissionRequest, fields, **where) == 1
        if won:
            for name, value in fields.items():
                setattr(self, name, value)
            transaction.on_commit(
                functools.partial(metrics.closed, str(status), fields["latency_ms"])
            )
        else:
            self.refresh_from_db()
        return won

    @property
    def is_overdue(self) -> bool:
        return self.status == Status.PENDING and self.expires_at <= timezone.now()

    # -- what browsers see ---------------------------------------------------------

    def request_message(self) -> dict[str, Any]:
        """``data`` of the ``permission_request`` event (live and on reconnect)."""
        message = {
            "request_id": str(self.request_id),
            "tool_name": self.tool_name,
            "arguments": self.arguments,
            "description": self.description,
            "expires_at": iso(self.expires_at),
            "expires_at_ms": milliseconds(self.expires_at),
        }
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        return message

    def cleared_message(self) -> dict[str, Any]:
        """``data`` of the ``permission_cleared`` event."""
        return {
            "request_id": str(self.request_id),
            "status": self.status,
            "approved": self.approved,
            "reason": self.reason,
        }

    def decision_data(self) -> dict[str, Any]:
        """The decision as the permission-response endpoint reports it: what
        ``permission_cleared`` says, and who decided when."""
        return {
            **self.cleared_message(),
            "decided_by": self.decided_by.get_username() if self.decided_by else None,
            "decided_at": iso(self.decided_at) if self.decided_at else None,
            "decided_by_rule": self.decided_by_rule,
            "tool_name": self.tool_name,
            "tool_call_id": self.tool_call_id or None,
            "arguments": self.final_arguments,
            "edited": self.edited,
            "abort": self.abort,
            "remember": self.remember,
        }


class Scope(models.TextChoices):
    SESSION = "session", "This session"
    USER = "user", "The user's sessions"
    GLOBAL = "global", "Every session"


class Effect(models.TextChoices):
    ALLOW = "allow", "Allow"
    DENY = "deny", "Deny"
    ASK = "ask", "Ask a person"


class PermissionRule(models.Model):
    """Decides matching requests before a person is asked (``rules``).

    A person's "remember" makes one (scope session or user, effect allow);
    staff manage them all in the admin.  Deny beats ask beats allow."""

    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.SESSION)
    session_id = models.CharField(
        max_length=128, blank=True, help_text="The session (scope session only)."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="permission_rules",
        help_text="Whose sessions (scope user only).",
    )
    effect = models.CharField(max_length=8, choices=Effect.choices, default=Effect.ALLOW)
    tool_name = models.CharField(
        max_length=200,
        validators=[validate_glob],
        help_text="A glob: write_file, fs_*, * (case-sensitive).",
    )
    arguments_match = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_arguments_match],
        help_text="Optional: each named argument's string form matched by a glob, e.g. "
        '{"cmd": "ls *"}.  Every one must match.',
    )
    reason = models.CharField(
        max_length=1000, blank=True, help_text="What the agent is told when the rule decides."
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    request = models.ForeignKey(
        PermissionRequest,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text='The approval whose "remember" created the rule.',
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["scope", "session_id"], name="perm_rule_scope_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(scope=Scope.SESSION, user__isnull=True) & ~models.Q(session_id="")
                )
                | models.Q(scope=Scope.USER, user__isnull=False, session_id="")
                | models.Q(scope=Scope.GLOBAL, user__isnull=True, session_id=""),
                name="perm_rule_scope_fields",
                violation_error_message="A session rule names a session, a user rule a "
                "user, a global rule neither.",
            ),
        ]

    def __str__(self) -> str:
        where = {
            Scope.SESSION: f"in {self.session_id}",
            Scope.USER: f"for {self.user}",
            Scope.GLOBAL: "everywhere",
        }.get(Scope(self.scope), "")
        return f"{self.effect} {self.tool_name} {where}"

    @property
    def audit_name(self) -> str:
        """How ``decided_by_rule`` names it."""
        return f"rule:{self.pk}"


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, as JavaScript's ``Date`` writes it."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
