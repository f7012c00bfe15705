from __future__ import annotations

from django.contrib import admin

from .models import StreamSession


@admin.register(StreamSession)
class StreamSessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["session_id", "owner", "title", "created_at"]
    search_fields = ["session_id", "owner__username", "title"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
