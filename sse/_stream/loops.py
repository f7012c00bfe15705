"""State kept per event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def of_loop(
    registry: dict[asyncio.AbstractEventLoop, T],
    lock: threading.Lock,
    loop: asyncio.AbstractEventLoop,
    make: Callable[[], T],
) -> T:
    """``registry``'s entry for ``loop``, made by ``make`` on first use.
    Loops come and go (``asyncio.run`` in agent code): the entries of
    closed ones are forgotten when a new one is made."""
    entry = registry.get(loop)
    if entry is None:
        with lock:  # loops of other threads add theirs too
            for closed in [other for other in registry if other.is_closed()]:
                del registry[closed]
            entry = registry.setdefault(loop, make())
    return entry
