"""The permission requests' Prometheus metrics, served with the sse app's
(``GET …/sse/metrics``, ``sse.metrics``).

``permissions_requests_total`` and ``permissions_decision_seconds`` count in
the process that closed the request (a worker for a person's answer, the
agent's process for expiry and cancellation); ``permissions_pending`` and
``permissions_oldest_pending_seconds`` are read from the database at scrape
time, the same on every instance.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from django.core.exceptions import SynchronousOnlyOperation
from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from sse import add_metrics_collector

logger = logging.getLogger(__name__)

REQUESTS = Counter(
    "permissions_requests",
    "Permission requests, by how they ended: approved, denied (by a person or a rule), "
    "expired, cancelled.",
    ["status"],
)
# People answer in seconds to minutes; PERMISSIONS["TIMEOUT"] is 300 by default.
DECISION_SECONDS = Histogram(
    "permissions_decision_seconds",
    "Seconds from asking a person to their answer (approved or denied).",
    buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
ANSWERS = frozenset({"approved", "denied"})


def closed(status: str, latency_ms: int | None) -> None:
    """A request ended with ``status``; ``latency_ms`` after it was asked,
    None when a rule decided before anyone was asked."""
    REQUESTS.labels(status).inc()
    if latency_ms is not None and status in ANSWERS:
        DECISION_SECONDS.observe(latency_ms / 1000)


class PendingCollector:
    """How many requests wait for an answer, and for how long the oldest has."""

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        from .models import PermissionRequest, Status

        try:
            # Not the overdue ones: their agent is gone (expire_permission_requests
            # closes them), nobody waits for them any more.
            waiting = PermissionRequest.objects.filter(
                status=Status.PENDING, expires_at__gt=timezone.now()
            )
            figures = waiting.aggregate(count=Count("pk"), oldest=Min("requested_at"))
        except (DatabaseError, SynchronousOnlyOperation):
            logger.exception("permissions metrics: the pending requests could not be read")
            return
        pending, oldest = self._families()
        pending.add_metric([], figures["count"])
        age = (timezone.now() - figures["oldest"]).total_seconds() if figures["oldest"] else 0
        oldest.add_metric([], max(0.0, age))
        yield pending
        yield oldest

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("permissions_pending", "Permission requests waiting for an answer."),
            GaugeMetricFamily(
                "permissions_oldest_pending_seconds",
                "Seconds the oldest pending permission request has waited (0: none waits).",
            ),
        )


add_metrics_collector(PendingCollector())
