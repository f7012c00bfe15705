"""Permission requests and their single decision, kept as the audit trail."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from . import metrics


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


# ``decided_by_rule`` of a request approved by a person's "remember".
REMEMBER_SESSION = "remember:session"


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
    arguments = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True)
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
        help_text='"remember:session", "policy:<dotted path>", or empty when a person '
        "answered or nobody did.",
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

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [
            # "The oldest pending request of a session" and the stream backlog.
            models.Index(fields=["session_id", "status", "requested_at"], name="perm_session_idx"),
            models.Index(fields=["status"], name="perm_status_idx"),
            models.Index(fields=["tool_name"], name="perm_tool_idx"),
            models.Index(fields=["requested_at"], name="perm_requested_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} in {self.session_id} ({self.status})"

    @property
    def approved(self) -> bool:
        return self.status == Status.APPROVED

    def decide(
        self,
        approved: bool,
        *,
        reason: str = "",
        user: Any = None,
        rule: str = "",
        client_ip: str | None = None,
        user_agent: str = "",
    ) -> bool:
        """Record the answer; True if this call made the decision.

        False when the request was no longer pending (someone else won; the
        instance is reloaded with the decision that stands) or has expired.
        """
        return self._close(
            Status.APPROVED if approved else Status.DENIED,
            unexpired_only=True,
            reason=reason,
            decided_by=user,
            decided_by_rule=rule,
            client_ip=client_ip,
            user_agent=user_agent[:512],
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
        rows = PermissionRequest.objects.filter(pk=self.pk, status=Status.PENDING)
        if unexpired_only:
            rows = rows.filter(expires_at__gt=now)
        fields |= {
            "status": str(status),
            "decided_at": now,
            "latency_ms": max(0, int((now - self.requested_at).total_seconds() * 1000)),
        }
        won = rows.update(**fields) == 1
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
        return {
            "request_id": str(self.request_id),
            "tool_name": self.tool_name,
            "arguments": self.arguments,
            "description": self.description,
            "expires_at": iso(self.expires_at),
            "expires_at_ms": milliseconds(self.expires_at),
        }

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
            "tool_name": self.tool_name,
        }


class PermissionRule(models.Model):
    """A person's "remember for this session": later requests for the tool in
    the session are approved without asking."""

    session_id = models.CharField(max_length=128)
    tool_name = models.CharField(max_length=200)
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
        help_text="The approval that created the rule.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["session_id", "tool_name"], name="perm_rule_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} in {self.session_id}"


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, as JavaScript's ``Date`` writes it."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
