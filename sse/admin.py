from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model

from .models import StreamSession

# The project's user model may log in by email (or anything else).
USERNAME = get_user_model().USERNAME_FIELD


@admin.register(StreamSession)
class StreamSessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["session_id", "owner", "title", "created_at"]
    search_fields = ["session_id", f"owner__{USERNAME}", "title"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
