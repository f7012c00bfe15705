"""Live events under Redis Cluster: sharded pub/sub, one subscriber per
primary that serves sessions this process and loop has streams of.

A session's channel (``sse_events:{id}``) hashes to the slot of its keys,
so the shard that stores its buffer also carries its events, and only its
own sessions' traffic.  ``SSUBSCRIBE`` is sent to the node the slot map
(``SlotMap``, from ``CLUSTER SLOTS``) names.  A session leaves its node
when the node says so (``-MOVED``, or an ``sunsubscribe`` Redis pushes when
the slot migrates or the node fails over) or when the connection to the
node fails (killed, partitioned): the map is asked again, the session is
subscribed on its new owner, and ``recover`` catches its streams up from
the buffer, as after the one-server listener's reconnect.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import hiredis
from redis.crc import key_slot
from redis.exceptions import RedisError

from .. import metrics
from .._stream.events import Event, render
from .._tasks import cancel_and_wait
from ..conf import conf
from ..exceptions import BrokerUnavailable
from .keys import channel as channel_of
from .listener import FENCE, IDLE_PING, MAX_BACKOFF, _all_of, _Subscriber
from .resp import CONNECT_TIMEOUT, command

if TYPE_CHECKING:
    from .connect import Address, RedisEndpoint

logger = logging.getLogger(__name__)

_ERRORS = (OSError, EOFError, TimeoutError, RedisError, hiredis.ProtocolError)


def redirection(error: Any) -> tuple[str, int, Address] | None:
    """``-MOVED 3999 10.0.0.2:6381`` -> ``("MOVED", 3999, ("10.0.0.2", 6381))`` (or ASK)."""
    parts = str(error).split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK") or not parts[1].isdigit():
        return None
    host, _, port = parts[2].rpartition(":")
    if not port.isdigit():
        return None
    return parts[0], int(parts[1]), (host.strip("[]"), int(port))


class SlotMap:
    """Which primary serves each hash slot, as the cluster last said.
    Shared by the loops of a process: a refresh replaces it whole."""

    def __init__(self, seeds: tuple[Address, ...]) -> None:
        self.seeds = seeds
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, Address]] = []
        self._moved: dict[int, Address] = {}
        self._refreshing: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    @property
    def known(self) -> bool:
        return bool(self._ranges)

    def owner(self, slot: int) -> Address | None:
        moved = self._moved.get(slot)
        if moved is not None:
            return moved
        ranges = self._ranges
        i = bisect.bisect_right(self._starts, slot) - 1
        if i >= 0 and ranges[i][0] <= slot <= ranges[i][1]:
            return ranges[i][2]
        return None

    def moved(self, slot: int, address: Address) -> None:
        """A node answered MOVED: the slot is ``address``'s until the next refresh."""
        self._moved[slot] = address

    async def refresh(self, query: Callable[[Address], Awaitable[Any]]) -> None:
        """Ask a node (a primary we know, else a seed of the URL) for the
        slots; concurrent refreshes on a loop share one query."""
        loop = asyncio.get_running_loop()
        task = self._refreshing.get(loop)
        if task is None or task.done():
            for closed in [other for other in self._refreshing if other.is_closed()]:
                del self._refreshing[closed]
            task = self._refreshing[loop] = loop.create_task(self._refresh(query))
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.shield(task)

    async def _refresh(self, query: Callable[[Address], Awaitable[Any]]) -> None:
        errors = []
        candidates = list(dict.fromkeys([*(r[2] for r in self._ranges), *self.seeds]))
        for address in candidates:
            try:
                reply = await query(address)
            except _ERRORS as exc:
                errors.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            if isinstance(reply, hiredis.ReplyError):
                errors.append(f"{address[0]}:{address[1]}: {reply}")
                continue
            ranges = []
            for start, end, primary, *_ in reply:
                host = primary[0].decode() if primary[0] else address[0]
                ranges.append((int(start), int(end), (host, int(primary[1]))))
            if ranges:
                ranges.sort()
                self._ranges = ranges
                self._starts = [r[0] for r in ranges]
                self._moved = {}
                return
        raise ConnectionError("no Redis Cluster node answers CLUSTER SLOTS: " + "; ".join(errors))


class _Moved(BrokerUnavailable):
    """The session's subscription moved to another node before it was confirmed."""


class ShardedListener:
    """The Redis Cluster listener of one event loop: the same duties as
    ``listener.SessionListener`` (``ensure``, ``release``, ``connected``,
    ``close``), with one ``_Shard`` per primary in use."""

    def __init__(
        self,
        endpoint: RedisEndpoint,
        slots: SlotMap,
        refresh: Callable[[], Awaitable[None]],
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[str, list[Event]], None],
        recover: Callable[[list[str], asyncio.Future[None]], None],
        fence: Callable[[str, Event], None],
    ) -> None:
        self.endpoint = endpoint
        self.slots = slots
        self._refresh = refresh
        self.loop = loop
        self.deliver = deliver
        self.fence = fence
        self._recover = recover
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._mover: asyncio.Task[None] | None = None
        self._shards: dict[Address, _Shard] = {}
        # Every session wanted on this loop, and the future of its current
        # subscription (done once its node confirmed it).
        self._subs: dict[str, asyncio.Future[None]] = {}
        self._route: dict[str, _Shard] = {}
        # Sessions waiting for a node (an ordered set).
        self._moving: dict[str, None] = {}
        self._closed = False

    @property
    def connected(self) -> bool:
        return (
            self._ready.is_set()
            and not self._moving
            and all(shard.protocol is not None for shard in tuple(self._shards.values()))
        )

    def start(self) -> None:
        if self._task is None:
            self._task = self.loop.create_task(self._run(), name="sse-redis-cluster-listener")

    async def close(self) -> None:
        self._closed = True
        tasks = [self._task, self._mover, *(shard.task for shard in self._shards.values())]
        await cancel_and_wait([task for task in tasks if task is not None])
        self._task = self._mover = None
        self._shards.clear()

    async def _run(self) -> None:
        """Learn the slots (the listener is up once a node answered), then
        watch the shards: a silent socket gets a PING, and is dropped (its
        sessions move) if it stays silent."""
        backoff = 0.1
        while not self.slots.known:
            try:
                await self._refresh()
            except asyncio.CancelledError:
                raise
            except _ERRORS as exc:
                logger.warning("SSE Redis Cluster listener cannot reach the cluster: %s", exc)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, MAX_BACKOFF)
        self._ready.set()
        while True:
            await asyncio.sleep(self.endpoint.health_check_interval(IDLE_PING))
            for shard in tuple(self._shards.values()):
                shard.watch()

    # -- subscriptions, called on the loop ---------------------------------------

    async def ensure(self, session_id: str) -> None:
        """Return once the node serving the session confirmed its subscription."""
        deadline = self.loop.time() + CONNECT_TIMEOUT
        try:
            if not self._ready.is_set():
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._ready.wait()
        except TimeoutError as exc:
            raise BrokerUnavailable("Redis Cluster did not answer") from exc
        while True:
            future = self._subs.get(session_id)
            if future is None:
                future = self._subscribe(session_id)
            if not future.done():
                await asyncio.wait([future], timeout=max(0.0, deadline - self.loop.time()))
                if not future.done():
                    raise BrokerUnavailable("Redis did not confirm the subscription")
            error = future.exception()
            if error is None:
                return
            if not isinstance(error, _Moved) or self.loop.time() >= deadline:
                raise error
            # Moved before it was confirmed: wait for its new node.

    def release(self, session_id: str) -> None:
        if self._subs.pop(session_id, None) is None:
            return
        self._moving.pop(session_id, None)
        shard = self._route.pop(session_id, None)
        if shard is not None:
            shard.unsubscribe(session_id)

    def _subscribe(self, session_id: str) -> asyncio.Future[None]:
        """Subscribe the session on the node that serves it (or queue it
        until the slot map names one)."""
        future = self._subs.get(session_id)
        if future is None or future.done():
            future = self._subs[session_id] = self.loop.create_future()
        address = self.slots.owner(key_slot(session_id.encode()))
        if address is None:
            self._move([session_id])
            return future
        shard = self._shards.get(address)
        if shard is None:
            shard = self._shards[address] = _Shard(self, address)
        self._route[session_id] = shard
        shard.subscribe(session_id, future)
        return future

    # -- sessions leaving their node -------------------------------------------------

    def lost(self, shard: _Shard) -> None:
        """``shard``'s connection is gone: its sessions move (a reconnect,
        to the same node or to the one now serving their slots)."""
        if self._shards.get(shard.address) is shard:
            del self._shards[shard.address]
        if shard.sessions:
            metrics.BROKER_RECONNECTS.inc()
        self.moved(shard, list(shard.sessions))

    def moved(self, shard: _Shard | None, session_ids: list[str]) -> None:
        """The sessions are no longer served by ``shard``'s node."""
        error = _Moved("the session moved to another Redis node")
        for sid in session_ids:
            if sid not in self._subs or (shard is not None and self._route.get(sid) is not shard):
                continue  # released, or already moved on
            self._route.pop(sid, None)
            old = self._subs[sid]
            if not old.done():
                old.set_exception(error)
                old.exception()  # retrieved: nobody may be waiting
            self._subs[sid] = self.loop.create_future()
        self._move(session_ids)

    def _move(self, session_ids: list[str]) -> None:
        for sid in session_ids:
            if sid in self._subs:
                self._moving[sid] = None
        if self._moving and self._mover is None and not self._closed:
            self._mover = self.loop.create_task(self._rehome(), name="sse-redis-cluster-moves")

    async def _rehome(self) -> None:
        """Until every moving session has a node: refresh the slot map,
        subscribe the sessions where it says, and catch their streams up."""
        backoff = 0.05
        try:
            while self._moving:
                try:
                    await self._refresh()
                except _ERRORS as exc:
                    logger.warning("SSE Redis Cluster listener cannot reach the cluster: %s", exc)
                else:
                    batch = [sid for sid in self._moving if sid in self._subs]
                    self._moving.clear()
                    futures = [self._subscribe(sid) for sid in batch]
                    if batch:
                        logger.info("SSE Redis Cluster listener moved %d sessions", len(batch))
                        self._recover(batch, _all_of(self.loop, futures))
                        await asyncio.wait(futures, timeout=CONNECT_TIMEOUT)
                    if not self._moving:
                        backoff = 0.05
                        continue
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            self._mover = None


class _Shard:
    """The sharded pub/sub socket to one node.  It connects once; when the
    connection fails, its sessions move (``ShardedListener.lost``), and a
    node that is still theirs gets a new ``_Shard``."""

    def __init__(self, owner: ShardedListener, address: Address) -> None:
        self.owner = owner
        self.address = address
        self.protocol: _Subscriber | None = None
        # The sessions this node serves, with their subscription futures.
        self.sessions: dict[str, asyncio.Future[None]] = {}
        self._sids: dict[bytes, str] = {}
        # One entry per (un)subscribe sent and not yet answered, in order:
        # [subscribe?, channel, slot, future or None].
        self._pending: deque[tuple[bool, bytes, int, asyncio.Future[None] | None]] = deque()
        self._queued: list[str] = []
        self._reads = -1
        self._pinged = False
        self.task = owner.loop.create_task(self._run(), name="sse-redis-shard")

    def subscribe(self, session_id: str, future: asyncio.Future[None]) -> None:
        self.sessions[session_id] = future
        self._sids[channel_of(session_id, True)] = session_id
        if self.protocol is None:
            self._queued.append(session_id)
        else:
            self._send(True, session_id, future)

    def unsubscribe(self, session_id: str) -> None:
        if self.sessions.pop(session_id, None) is None:
            return
        if self.protocol is not None and session_id not in self._queued:
            self._send(False, session_id, None)

    def _send(self, subscribe: bool, session_id: str, future: asyncio.Future[None] | None) -> None:
        assert self.protocol is not None
        channel = channel_of(session_id, True)
        self._pending.append((subscribe, channel, key_slot(session_id.encode()), future))
        self.protocol.write(command(b"SSUBSCRIBE" if subscribe else b"SUNSUBSCRIBE", channel))

    async def _run(self) -> None:
        owner = self.owner
        try:
            protocol = _Subscriber(owner.loop, conf.COALESCE_MS / 1000)
            async with asyncio.timeout(CONNECT_TIMEOUT):  # not wait_for: see listener._run
                await owner.endpoint.open(protocol, self.address)
            protocol.on_reply = self._on_reply
            self.protocol = protocol
            queued, self._queued = self._queued, []
            for sid in queued:
                if sid in self.sessions:
                    self._send(True, sid, self.sessions[sid])
            await protocol.closed
        except asyncio.CancelledError:
            raise
        except _ERRORS as exc:
            logger.warning("SSE Redis Cluster listener lost node %s:%s: %s", *self.address, exc)
        except Exception:
            logger.exception("SSE Redis Cluster listener failed on node %s:%s", *self.address)
        finally:
            if self.protocol is not None:
                self.protocol.abort()
                self.protocol = None
            owner.lost(self)  # before the futures fail: their sessions move
            self._fail_pending()

    def _fail_pending(self) -> None:
        error = BrokerUnavailable("Redis connection lost")
        while self._pending:
            future = self._pending.popleft()[3]
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()

    def watch(self) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        if protocol.reads == self._reads:
            if self._pinged:
                logger.warning("SSE Redis Cluster listener: %s:%s does not answer", *self.address)
                protocol.abort()
                return
            protocol.write(command(b"PING"))
            self._pinged = True
        else:
            self._pinged = False
        self._reads = protocol.reads

    # -- replies -----------------------------------------------------------------

    def _on_reply(self, reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            self._refused(reply)
            return
        kind = reply[0]
        if kind == b"smessage":
            sid = self._sids.get(reply[1])
            if sid is not None:
                payload = reply[2]
                split = payload.index(b"\n")
                if payload[0] == FENCE:
                    self.owner.fence(sid, render(payload[1:split], payload[split + 1 :]))
                else:
                    self.owner.deliver(sid, [render(payload[:split], payload[split + 1 :])])
        elif kind == b"ssubscribe" or kind == b"sunsubscribe":
            self._acknowledged(kind == b"ssubscribe", reply[1])

    def _take(self, match: Callable[[tuple[bool, bytes, int, Any]], bool]) -> Any:
        """The oldest pending entry that ``match``es, removed (None if none)."""
        for i, entry in enumerate(self._pending):
            if match(entry):
                del self._pending[i]
                return entry
        return None

    def _acknowledged(self, subscribe: bool, channel: bytes) -> None:
        entry = self._take(lambda e: e[0] == subscribe and e[1] == channel)
        sid = self._sids.get(channel)
        if entry is not None:
            future = entry[3]
            if future is not None and not future.done():
                future.set_result(None)
            if not subscribe and sid not in self.sessions:
                self._sids.pop(channel, None)
        elif not subscribe and sid in self.sessions:
            # Pushed by Redis: the slot now belongs to another node.
            assert sid is not None
            self._leave(sid)

    def _refused(self, error: Any) -> None:
        text = str(error)
        moved = redirection(error)
        if moved is None and not text.startswith(("TRYAGAIN", "CLUSTERDOWN")):
            raise ConnectionError(f"Redis replied with an error: {error}")
        if moved is not None:
            kind, slot, address = moved
            entry = self._take(lambda e: e[2] == slot)
            if kind == "MOVED":
                self.owner.slots.moved(slot, address)
        else:
            entry = self._take(lambda e: True)
        if entry is None:
            return
        sid = self._sids.get(entry[1])
        if entry[0] and sid is not None and self.sessions.get(sid) is entry[3]:
            self._leave(sid)

    def _leave(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.owner.moved(self, [session_id])
