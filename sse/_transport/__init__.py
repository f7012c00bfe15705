"""The transport carries events from publishers to the streams of every
process: ``memory`` inside one process (the embedded default) or ``redis``
across worker processes.  Both keep the same per-session buffer."""

from __future__ import annotations

from .base import Broker, BufferInfo, Deliver, Fence, Recover

__all__ = ["Broker", "BufferInfo", "Deliver", "Fence", "Recover", "make_broker"]


def make_broker(url: str | None, deliver: Deliver, recover: Recover, fence: Fence) -> Broker:
    """The broker for ``SSE["REDIS_URL"]``: None for the in-process one."""
    if url is None:
        from .memory import MemoryBroker

        return MemoryBroker(deliver)
    from .redis import RedisBroker

    return RedisBroker(url, deliver, recover, fence)
