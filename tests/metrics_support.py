"""Reading ``GET …/sse/metrics`` as Prometheus would, with prometheus_client's parser."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

METRICS_PATH = "/agent_backend/api/sse/metrics/"
# The metric names SPEC §7 promises, as the families prometheus_client parses.
SPEC_FAMILIES = {
    "sse_connections": "gauge",
    "sse_stream_opens": "counter",
    "sse_events_published": "counter",
    "sse_events_delivered": "counter",
    "sse_slow_client_disconnects": "counter",
    "sse_replay_gaps": "counter",
    "sse_broker_reconnects": "counter",
    "permissions_requests": "counter",
    "permissions_decision_seconds": "histogram",
}


@dataclass
class Scrape:
    families: dict[str, str]  # name -> type
    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when it is absent (a labelled counter never counted)."""
        for sample in self.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
        return 0.0

    def sample_names(self) -> set[str]:
        return {sample.name for sample in self.samples}


def scrape(base_url: str, token: str, path: str = METRICS_PATH) -> Scrape:
    """The metrics, asked with ``Authorization: Bearer <token>``."""
    response = httpx.get(
        base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=20, trust_env=False
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    families = list(text_string_to_metric_families(response.text))
    return Scrape(
        {family.name: family.type for family in families},
        [sample for family in families for sample in family.samples],
    )


def eventually(
    read: Callable[[], Scrape], check: Callable[[Scrape], bool], timeout: float = 10.0
) -> Scrape:
    """Scrape until ``check`` holds (figures reach the counters once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if check(found):
            return found
        assert time.monotonic() < deadline, f"not met in {timeout} s: {found.samples}"
        time.sleep(0.1)
