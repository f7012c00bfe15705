from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("agent_backend/api/", include("sse.urls")),
    path("agent_backend/api/", include("permissions.urls")),
]
