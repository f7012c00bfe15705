from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from ...announce import announce
from ...models import PermissionRequest, Status


class Command(BaseCommand):
    help = (
        "Mark pending requests past their expiry as expired (their agent stopped "
        "without closing them, e.g. it was killed) and print how many."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        overdue = PermissionRequest.objects.filter(
            status=Status.PENDING, expires_at__lte=timezone.now()
        )
        expired = 0
        for request in overdue.iterator():
            if not request.expire():
                continue  # decided meanwhile
            expired += 1
            if not announce(request):
                self.stderr.write(f"{request.request_id}: permission_cleared not published")
        self.stdout.write(str(expired))
