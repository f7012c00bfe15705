"""Include under ``agent_backend/api/`` (or any prefix):
``path("agent_backend/api/", include("permissions.urls"))``."""

from __future__ import annotations

from django.urls import re_path

from . import views

app_name = "permissions"

urlpatterns = [
    re_path(  # any rest of the path: a malformed session id is the view's JSON 400
        r"^sse/permission-response/(?P<session_id>[\s\S]*)$",
        views.PermissionResponseView.as_view(),
        name="permission_response",
    ),
]
