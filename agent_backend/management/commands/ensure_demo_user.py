from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create or update the demo user (staff, may view the permission history)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password")
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="where the demo runs")

    def handle(self, *args: Any, **options: Any) -> None:
        username, password, url = options["username"], options["password"], options["url"]
        user, created = get_user_model().objects.get_or_create(username=username)
        user.is_staff = True
        user.is_active = True
        user.set_password(password)
        user.save()
        # Staff alone sees an empty admin: allow reading what the demo produces.
        readable = Permission.objects.filter(
            content_type__app_label__in=["permissions", "sse"], codename__startswith="view_"
        )
        user.user_permissions.add(*readable)
        base = url.rstrip("/")
        self.stdout.write(
            f"{'Created' if created else 'Updated'} the demo user.\n"
            f"  Demo page:  {base}/\n"
            f"  Admin:      {base}/admin/ (permission history: "
            f"{base}/admin/permissions/permissionrequest/)\n"
            f"  Username:   {username}\n"
            f"  Password:   {password}"
        )
