from __future__ import annotations

from django.conf import settings
from django.db import models


class StreamSession(models.Model):
    """A conversation whose events one user may read (staff may read all)."""

    session_id = models.CharField(max_length=128, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stream_sessions"
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.session_id


class StreamTicket(models.Model):
    """A single-use pass to open one stream of a session within ``TICKET_TTL``
    seconds: a URL that reaches a log is useless.  Only the ticket's SHA-256
    is stored."""

    digest = models.CharField(max_length=64, primary_key=True)
    session_id = models.CharField(max_length=128)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField(db_index=True)
    # When the access token that bought the ticket expires (None: bought with
    # the session cookie): the stream ends then with token_expired.
    access_expires_at = models.BigIntegerField(null=True)  # Unix seconds

    def __str__(self) -> str:
        return f"ticket for {self.session_id}"
