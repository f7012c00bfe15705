"""The apps' Prometheus metrics (prometheus_client), served by
``GET …/sse/metrics`` to staff or to ``Authorization: Bearer
<SSE["METRICS_TOKEN"]>``.

Several worker processes (uvicorn or gunicorn ``--workers``, several
daphnes) share one port, so a scrape reaches one of them at random: it must
answer for all.  With ``PROMETHEUS_MULTIPROC_DIR`` naming a directory when
the server starts, prometheus_client's multiprocess mode does that: each
process keeps its figures in files of its own there, and whichever answers a
scrape adds up every file.  The counters of a worker that exited still
count, so totals never go down when a worker is replaced; the gauges of a
process that is gone are dropped at the next scrape (``_forget_dead``:
uvicorn has no hook that would say a worker died).  Without the variable the
figures are the answering process's own: right for one process.

Figures every process sees alike (is the broker answering, approvals pending
in the database) are read when a scrape asks (``add_metrics_collector``).

Per-event counts stay off the hot path: the streams add plain ints
(``sse._stream.tally``), brought to the counters once a second per serving
process (``start``) and at each scrape by the process that answers it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator

from django.core.exceptions import ImproperlyConfigured
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from ._stream import tally

logger = logging.getLogger(__name__)

# Read by prometheus_client when it is first imported, as here.
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
if MULTIPROC_DIR is not None and not os.path.isdir(MULTIPROC_DIR):
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR is {MULTIPROC_DIR!r}, which is not a directory: create it "
        "(empty) before the server starts, or unset it when one process serves."
    )

# How often a serving process brings its per-event counts to the counters.
FLUSH_INTERVAL = 1.0

STREAM_OPENS = Counter(
    "sse_stream_opens",
    "Requests to open an event stream, by the HTTP status of the answer (200: opened).",
    ["status"],
)
EVENTS_PUBLISHED = Counter("sse_events_published", "Events published with sse.notifier.")
EVENTS_DELIVERED = Counter(
    "sse_events_delivered", "Events written to client streams (an event to two streams: 2)."
)
SLOW_CLIENT_DISCONNECTS = Counter(
    "sse_slow_client_disconnects",
    "Streams ended because the client read too slowly (QUEUE_SIZE events waited).",
)
REPLAY_GAPS = Counter(
    "sse_replay_gaps",
    "Streams opened with replay_gap: events the client missed were no longer buffered.",
)
BROKER_RECONNECTS = Counter(
    "sse_broker_reconnects", "Times a Redis listener connected again after losing its connection."
)
# livesum: the streams of the processes alive; livemin: 0 if any of them has
# no listener (a process that never served sets none).
CONNECTIONS = Gauge("sse_connections", "Open client streams.", multiprocess_mode="livesum")
LISTENER_RUNNING = Gauge(
    "sse_listener_running",
    "1 while the broker listener of every serving process is connected, else 0.",
    ["broker"],
    multiprocess_mode="livemin",
)

_lock = threading.Lock()
_flushed_delivered = 0
_serving = False
_ticking: asyncio.AbstractEventLoop | None = None
_collectors: list[Collector] = []


def add_metrics_collector(collector: Collector) -> None:
    """Read ``collector`` at every scrape, in the process that answers it:
    for figures that are the same whichever process reads them (the
    database, the broker).  It needs a ``describe()``, so that registering
    it reads nothing."""
    REGISTRY.register(collector)
    _collectors.append(collector)


def flush() -> None:
    """Bring this process's figures to its counters and gauges."""
    global _flushed_delivered
    from ._stream.hub import all_hubs, get_hub

    with _lock:
        delivered = tally.delivered()
        if delivered > _flushed_delivered:
            EVENTS_DELIVERED.inc(delivered - _flushed_delivered)
            _flushed_delivered = delivered
        CONNECTIONS.set(sum(hub.connection_count() for hub in all_hubs()))
        if _serving:
            broker = get_hub().broker
            LISTENER_RUNNING.labels(broker.backend).set(1 if broker.listener_running else 0)


def start(loop: asyncio.AbstractEventLoop) -> None:
    """``loop`` serves streams: flush once a second (on one serving loop of
    the process), and at exit."""
    global _serving, _ticking
    with _lock:
        if not _serving:
            atexit.register(flush)
        _serving = True
        if _ticking is not None and not _ticking.is_closed():
            return
        _ticking = loop
    loop.call_soon(_tick, loop)


def _tick(loop: asyncio.AbstractEventLoop) -> None:
    try:
        flush()
    except Exception:
        logger.exception("SSE metrics: flushing failed")
    loop.call_later(FLUSH_INTERVAL, _tick, loop)


def exposition(accept: str) -> tuple[bytes, str]:
    """The metrics in the format ``accept`` (an ``Accept`` header) asks for,
    and its content type."""
    flush()
    registry: CollectorRegistry = REGISTRY
    if MULTIPROC_DIR is not None:
        _forget_dead(MULTIPROC_DIR)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, MULTIPROC_DIR)  # type: ignore[no-untyped-call]
        for collector in _collectors:
            registry.register(collector)
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_([0-9]+)\.db")


def _forget_dead(directory: str) -> None:
    """Drop the live gauges of processes that no longer exist (a worker
    killed or replaced): what gunicorn's ``child_exit`` hook would do."""
    pids = set()
    for name in os.listdir(directory):
        match = _LIVE_GAUGE_FILE.fullmatch(name)
        if match is not None:
            pids.add(int(match[1]))
    for pid in pids:
        if not _alive(pid):
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: it exists
        return True
    try:
        # A worker killed a moment ago stays a zombie until its supervisor
        # notices: dead already.  "pid (name) state ...", name may hold spaces.
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[:1] != [b"Z"]
    except FileNotFoundError:  # gone meanwhile, or no /proc (not Linux)
        return not os.path.isdir("/proc")


class BrokerCollector:
    """``sse_broker_connected``: does the broker answer, asked at scrape time."""

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        from ._stream.hub import get_hub

        broker = get_hub().broker
        family = self._family()
        family.add_metric([broker.backend], 1 if broker.is_connected() else 0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "sse_broker_connected",
            "1 if the broker answers (a PING to Redis), asked at scrape time.",
            labels=["broker"],
        )


add_metrics_collector(BrokerCollector())
