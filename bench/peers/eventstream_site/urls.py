from __future__ import annotations

import django_eventstream
from django.urls import include, path

# One channel per session: /events/<session_id>/
urlpatterns = [path("events/<channel>/", include(django_eventstream.urls))]
