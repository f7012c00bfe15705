"""Include under ``agent_backend/api/`` (or any prefix):
``path("agent_backend/api/", include("sse.urls"))``."""

from __future__ import annotations

from django.urls import path
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from ._http import stream, views

app_name = "sse"

urlpatterns = [
    path("auth/token/", TokenObtainPairView.as_view(), name="token_obtain"),
    path("auth/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("sse/sessions/", views.SessionsView.as_view(), name="sessions"),
    path("sse/events/<str:session_id>", stream.events, name="events"),
    path("sse/health/<str:session_id>", views.HealthView.as_view(), name="health"),
]
