"""What every broker does: publish, read a buffer, subscribe, unsubscribe,
and hand what arrives to a deliver callback."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from .._stream.events import Event, EventKey
from .._stream.replay import BufferRead

# How long a session's newest id is remembered after its buffer expired, so
# that a client which had seen it reconnects without a false ``replay_gap``.
LAST_ID_TTL = 24 * 60 * 60

# Events of a session for the streams of a loop; called on that loop.
Deliver = Callable[[asyncio.AbstractEventLoop, str, list[Event]], None]
# The connection of a loop came back and subscribes to these sessions again;
# the future is done once it has (or fails with BrokerUnavailable).
Recover = Callable[[asyncio.AbstractEventLoop, list[str], "asyncio.Future[None]"], None]
# The first event a new primary stored for a session (after a failover):
# events before it may be gone.  Called on the loop instead of Deliver.
Fence = Callable[[asyncio.AbstractEventLoop, str, Event], None]


@dataclass(slots=True)
class BufferInfo:
    length: int
    last_event_id: str | None


class Broker(ABC):
    backend: str
    # Sentinel or Cluster: a failover may lose what a primary accepted last.
    replicated = False

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver

    # -- publishing (any thread, sync or async) --------------------------------

    @abstractmethod
    def publish(self, session_id: str, body: bytes) -> str:
        """Store and deliver one prepared event; return its id."""

    @abstractmethod
    async def apublish(self, session_id: str, body: bytes) -> str: ...

    @abstractmethod
    async def read(self, session_id: str, after: EventKey | None) -> BufferRead:
        """The buffer after ``after`` (only its newest key when None)."""

    # -- subscriptions (on the loop that serves the streams) -------------------

    @abstractmethod
    async def subscribe(self, session_id: str) -> None:
        """Return once every event of the session published from now on is
        delivered on the running loop.  Raises BrokerUnavailable."""

    @abstractmethod
    def unsubscribe(self, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        """The last stream of the session on ``loop`` has gone."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:  # noqa: B027
        """``loop`` serves streams: start what delivers to it."""

    async def aclose(self) -> None:  # noqa: B027
        """Stop what delivers to the running loop (it is about to end)."""

    # -- stream leases: MAX_CONNECTIONS_PER_SESSION across processes ----------
    # False: the broker serves one process, whose hub counts the streams.
    shares_leases = False

    async def take_lease(self, session_id: str, lease: str, limit: int, seconds: float) -> bool:
        """Hold ``lease`` for ``seconds`` if the session's unexpired leases
        number fewer than ``limit``.  Raises BrokerUnavailable."""
        raise NotImplementedError

    def drop_lease(self, session_id: str, lease: str, loop: asyncio.AbstractEventLoop) -> None:
        """Give ``lease`` back without waiting (it expires anyway)."""
        raise NotImplementedError

    async def renew_leases(self, leases: dict[str, list[str]], seconds: float) -> None:
        """Hold each session's leases ``seconds`` longer.  Raises BrokerUnavailable."""
        raise NotImplementedError

    def lease_count(self, session_id: str) -> int:
        """The session's unexpired leases.  Raises BrokerUnavailable."""
        raise NotImplementedError

    # -- figures for health ----------------------------------------------------

    @abstractmethod
    def buffer_info(self, session_id: str) -> BufferInfo: ...

    @abstractmethod
    def is_connected(self) -> bool: ...

    @property
    @abstractmethod
    def listener_running(self) -> bool: ...
