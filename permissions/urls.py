"""Include under ``agent_backend/api/`` (or any prefix):
``path("agent_backend/api/", include("permissions.urls"))``."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "permissions"

urlpatterns = [
    path(
        "sse/permission-response/<str:session_id>",
        views.PermissionResponseView.as_view(),
        name="permission_response",
    ),
]
