from __future__ import annotations

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("agent_backend/api/", include("sse.urls")),
    path("agent_backend/api/", include("permissions.urls")),
    path("agent_backend/api/demo/runs/", views.DemoRunView.as_view(), name="demo_runs"),
    path("demo/seed/", views.seed_page, name="demo_seed"),
    path("", views.demo_page, name="demo"),
]
# With DEBUG on, any ASGI server (not only runserver) serves the demo's JS and CSS.
urlpatterns += staticfiles_urlpatterns()
