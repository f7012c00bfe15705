"""End every stream when the server is asked to stop.

ASGI servers wait for open responses before they exit, and an event stream
never finishes by itself: without this, SIGTERM would hang until the
server's graceful timeout.  Our handler ends the streams, then calls the
server's own handler.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

_installed = False


def end_all_streams(reason: str = "shutdown") -> None:
    from .._stream.hub import all_hubs

    for hub in all_hubs():
        hub.end_all(reason)


def install() -> None:
    """Chain our handler before the server's; main thread only, once."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            end_all_streams()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(sig, handler)
