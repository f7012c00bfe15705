"""``MAX_CONNECTIONS_PER_SESSION`` across processes.  With a broker that
several processes share (Redis), each counted stream holds a lease there
(``Broker.take_lease``), which its process renews every ``renew_every()``
seconds and which runs out ``RENEWALS`` renewals later: the streams of a
killed process stop counting within ``lease_seconds()``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .._transport import Broker
from ..conf import conf
from ..exceptions import BrokerUnavailable
from .queue import Connection

logger = logging.getLogger(__name__)

RENEWALS = 3
# Streams renewed per write, and the seconds between two writes: one write
# for every stream of a loop held the loop, and Redis, for tens of
# milliseconds each renewal, and the events published meanwhile waited.
BATCH = 250
PAUSE = 0.02


def renew_every() -> float:
    return min(conf.HEARTBEAT_INTERVAL, 10.0)


def lease_seconds() -> float:
    return RENEWALS * renew_every()


async def keep(broker: Broker, connections: Callable[[], list[Connection]]) -> None:
    """Renew the leases of a loop's streams until it has none."""
    while True:
        await asyncio.sleep(renew_every())
        leased = [conn for conn in connections() if conn.lease is not None]
        if not leased:
            return
        try:
            for start in range(0, len(leased), BATCH):
                if start:
                    await asyncio.sleep(PAUSE)
                # Read just before the write: a stream closed meanwhile has
                # given its lease back, and renewing it would take it again.
                held: dict[str, list[str]] = {}
                for conn in leased[start : start + BATCH]:
                    if conn.lease is not None:
                        held.setdefault(conn.session_id, []).append(conn.lease)
                if held:
                    await broker.renew_leases(held, lease_seconds())
        except BrokerUnavailable as exc:
            # Redis is away: the leases may run out meanwhile, and are taken
            # again by the next renewal.
            logger.warning("SSE could not renew the leases of open streams: %s", exc)
