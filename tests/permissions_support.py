"""Helpers shared by the permission tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import connections

from permissions.models import PermissionRequest

T = TypeVar("T")


async def orm(work: Callable[[], T]) -> T:
    """ORM work from the test's event loop (its thread may not use the ORM)."""

    def run() -> T:
        try:
            return work()
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


async def published_pending(
    session_id: str, count: int = 1, timeout: float = 30
) -> list[PermissionRequest]:
    """The session's pending requests, once ``count`` of them have been published."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await orm(
            lambda: list(
                PermissionRequest.objects.filter(session_id=session_id, status="pending")
                .exclude(event_id="")
                .order_by("requested_at", "id")
            )
        )
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"{count} published requests expected, got {rows}"
        await asyncio.sleep(0.02)
