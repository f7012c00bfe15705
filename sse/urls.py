"""Include under ``agent_backend/api/`` (or any prefix):
``path("agent_backend/api/", include("sse.urls"))``."""

from __future__ import annotations

from django.urls import path, re_path, reverse

from ._http import api, metrics, schema, stream, views

app_name = "sse"

urlpatterns = [
    path("auth/token/", api.TokenObtainAppView.as_view(), name="token_obtain"),
    path("auth/token/refresh/", api.TokenRefreshAppView.as_view(), name="token_refresh"),
    path("sse/sessions/", views.SessionsView.as_view(), name="sessions"),
    path("sse/tickets/", views.TicketsView.as_view(), name="tickets"),
    path("sse/schema/", schema.SchemaView.as_view(), name="schema"),
    path("sse/metrics/", metrics.MetricsView.as_view(), name="metrics"),
    # Also without the slash, the way scrape configs tend to spell it: no
    # redirect for the scraper to follow (nor a host without APPEND_SLASH).
    path("sse/metrics", metrics.MetricsView.as_view(schema=None)),
    # Any rest of the path is the session id: a malformed one ("", "a/b") is
    # the views' JSON 400, not the site's HTML 404.
    re_path(r"^sse/events/(?P<session_id>[\s\S]*)$", stream.events, name="events"),
    re_path(r"^sse/health/(?P<session_id>[\s\S]*)$", views.HealthView.as_view(), name="health"),
]


def api_base() -> str:
    """Where the project included these URLs, without the trailing slash:
    ``"/agent_backend/api"``, ``""`` at the root.  ``NoReverseMatch`` if it
    did not include them."""
    return reverse("sse:sessions").removesuffix("sse/sessions/").rstrip("/")
