"""Ending tasks without taking the caller's own cancellation for theirs."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they have ended.  A cancellation of
    the caller that comes meanwhile is not taken for theirs: it is raised.
    (One from before, which the caller is cleaning up after, is not.)"""
    current = asyncio.current_task()
    cancels = 0 if current is None else current.cancelling()
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > cancels:
                raise
