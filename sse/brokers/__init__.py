"""The broker carries events from publishers to streams: ``memory`` inside
one process (the embedded default) or ``redis`` across worker processes.
Both keep the same per-session buffer and give the same replay semantics."""

from __future__ import annotations

import threading

from ..conf import conf
from .base import Broker, BufferRead

__all__ = ["Broker", "BufferRead", "get_broker"]

_lock = threading.Lock()
_brokers: dict[str | None, Broker] = {}


def get_broker() -> Broker:
    """The broker for the current ``SSE["REDIS_URL"]`` (one per process)."""
    url = conf.REDIS_URL
    broker = _brokers.get(url)
    if broker is None:
        with _lock:
            broker = _brokers.get(url)
            if broker is None:
                if url is None:
                    from .memory import MemoryBroker

                    broker = MemoryBroker()
                else:
                    from .redis import RedisBroker

                    broker = RedisBroker(url)
                _brokers[url] = broker
    return broker
