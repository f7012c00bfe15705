"""The Redis broker: every worker process shares buffers and live events.

Publishing is one Lua script, so storing an event in the session's buffer (a
Redis stream trimmed to ``BUFFER_SIZE`` and expiring ``BUFFER_TTL`` seconds
after the last publish) and publishing it on ``sse_events:<session_id>``
happen together or not at all.  Under Sentinel and Cluster the script also
marks the first event a new primary stores for a session (``PUBLISH_FENCED``);
under Cluster the keys carry a hash tag, the event goes out by sharded
pub/sub and buffer reads go to the node that serves the session's slot
(``sharded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import threading
from typing import Any

import hiredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from .._stream.events import ZERO, EventKey, parse_id, render
from .._stream.replay import BufferRead
from ..conf import conf
from ..exceptions import BrokerUnavailable
from .base import LAST_ID_TTL, Broker, BufferInfo, Deliver, Fence, Recover
from .connect import Address, ClusterEndpoint, PrimaryDemoted, endpoint
from .keys import buffer_key, channel, last_key, leases_key, writer_key
from .listener import SessionListener
from .resp import Commands, command
from .sharded import ShardedListener, SlotMap, redirection

# KEYS: buffer, channel, last id. ARGV: BUFFER_SIZE + 1, BUFFER_TTL, body,
# LAST_ID_TTL.
# The stream keeps one entry more than the buffer: once trimming started, its
# oldest entry is not replayed but marks the newest event dropped, which is
# how a read knows whether a client missed events (Redis does not record
# what MAXLEN trimmed).  The channel carries "<id>\n<body>": each process
# renders the frame once.
PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'b', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[3], id, 'EX', ARGV[4])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[3])
return id
"""

# KEYS: buffer, last id. ARGV: exclusive start id, or '' for none.
# -> {0, last id or false} when the buffer does not exist (expired), else
# {1, newest, trimmed, entries} where trimmed is the marker entry's id ('0-0'
# while nothing was dropped).  READ_FENCED (Sentinel, Cluster) also takes
# the writer key and adds to either reply whether the session's newest
# event was stored by another primary than this one (see PUBLISH_FENCED):
# until this primary stores one, a client anywhere in the session may have
# missed what the old primary accepted last.
_READ = """%(me)s
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, redis.call('GET', KEYS[2])%(moved)s} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local fields = {}
for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
local trimmed = '0-0'
if fields['entries-added'] > fields['length'] then trimmed = fields['first-entry'][1] end
local newest = fields['last-generated-id']
if ARGV[1] == '' then return {1, newest, trimmed, {}%(moved)s} end
return {1, newest, trimmed, redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')%(moved)s}
"""
READ = _READ % {"me": "", "moved": ""}
READ_SHA = hashlib.sha1(READ.encode()).hexdigest().encode()

# PUBLISH for Sentinel and Cluster.  KEYS: buffer, channel, last id, writer.
# Redis replicates asynchronously: a replica promoted after its primary
# died may lack the last events that primary accepted, and the ids it
# issues carry on from the newest it has, so nothing in the buffer would
# show the hole.  The writer key names the primary that stored the
# session's newest event; the first event another primary stores is marked
# ('f' in the buffer, '!' before the id on the channel), and a client that
# had not seen it gets replay_gap (sse._stream.replay).  No writer counts as
# another primary: the new one may never have heard of the session at all
# (so a session's first event is marked too, which tells no client anything:
# none has a position before it).
PUBLISH_FENCED = """
local me = %(identity)s
local fenced = redis.call('GET', KEYS[4]) ~= me
local id
if fenced then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'b', ARGV[3], 'f', '1')
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'b', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[3], id, 'EX', ARGV[4])
redis.call('SET', KEYS[4], me, 'EX', ARGV[4])
redis.call('%(publish)s', KEYS[2], (fenced and '!' or '') .. id .. '\\n' .. ARGV[3])
return id
"""
# Who "me" is: the replication id changes when a replica is promoted; it
# costs an INFO (measured on Redis 7.0: the script takes 26 us of Redis CPU
# instead of 17).  A cluster node's id is its own and costs 1 us.
_IDENTITY = {
    "sentinel": "string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')",
    "cluster": "redis.call('CLUSTER', 'MYID')",
}
_PUBLISH_COMMAND = {"sentinel": "PUBLISH", "cluster": "SPUBLISH"}

# Stream leases (keys.leases_key): Redis's clock, so every process agrees.
# Scores are formatted whole: Lua would print 1.7e+12 and lose the ms.
NOW_MS = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""
# KEYS: leases. ARGV: lease, limit, ms it is held for. -> 1 taken, 0 full.
TAKE_LEASE = (
    NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)
# KEYS: lease sets (of one session each). ARGV: ms they are held for, then
# for each key how many of its leases follow, and those leases.  A lease
# that ran out meanwhile (the process stalled) is taken again: its stream is
# open.  One call renews a whole batch of streams outside a cluster.
RENEW_LEASES = (
    NOW_MS
    + """
local expires = string.format('%.0f', now + ARGV[1])
local at = 2
for k = 1, #KEYS do
  local last = at + tonumber(ARGV[at])
  for i = at + 1, last do redis.call('ZADD', KEYS[k], expires, ARGV[i]) end
  redis.call('PEXPIRE', KEYS[k], ARGV[1])
  at = last + 1
end
return #KEYS
"""
)
# KEYS: leases. -> how many have not run out.
COUNT_LEASES = (
    NOW_MS
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
"""
)

_BACKOFF = ExponentialWithJitterBackoff(base=0.05, cap=0.5)
# Seconds health waits for Redis to answer a PING.
PROBE_TIMEOUT = 1.0
# A buffer read changes nothing: it is tried this often before it fails.
READ_ATTEMPTS = 4


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


_LEASE_SHAS = {
    script: hashlib.sha1(script.encode()).hexdigest().encode()
    for script in (TAKE_LEASE, RENEW_LEASES)
}


def _script_call(script: str, keys: tuple[str, ...], *args: str) -> tuple[bytes, bytes]:
    """EVALSHA of ``script``, and the EVAL to send instead if Redis lacks it."""
    numkeys = b"%d" % len(keys)
    return (
        command(b"EVALSHA", _LEASE_SHAS[script], numkeys, *keys, *args),
        command(b"EVAL", script, numkeys, *keys, *args),
    )


def _noscript(reply: Any) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")


def _args(body: bytes) -> list[Any]:
    return [conf.BUFFER_SIZE + 1, conf.BUFFER_TTL, body, LAST_ID_TTL]


def publish_script(topology: str) -> str:
    if topology == "single":
        return PUBLISH
    return PUBLISH_FENCED % {
        "identity": _IDENTITY[topology],
        "publish": _PUBLISH_COMMAND[topology],
    }


def read_script(topology: str) -> str:
    if topology == "single":
        return READ
    return _READ % {
        "me": "local moved = redis.call('GET', KEYS[3]) ~= " + _IDENTITY[topology],
        "moved": ", moved and 1 or 0",
    }


class RedisBroker(Broker):
    backend = "redis"

    def __init__(self, url: str, deliver: Deliver, recover: Recover, fence: Fence) -> None:
        super().__init__(deliver)
        self._recover = recover
        self._fence = fence
        self.endpoint = endpoint(url)
        self.topology = self.endpoint.topology
        self.replicated = self.topology != "single"
        self._tagged = self.topology == "cluster"
        self._script = publish_script(self.topology)
        self._read_script = read_script(self.topology).encode()
        self._read_sha = hashlib.sha1(self._read_script).hexdigest().encode()
        # Made on first use: a cluster client asks the cluster for its slots
        # when it is made, and making the broker must not need Redis up.
        self._publish: Any = None
        self._figures: Any = None
        self._probe: Any = None
        self._lock = threading.Lock()
        self._commands: dict[asyncio.AbstractEventLoop, Commands] = {}
        self._node_commands: dict[tuple[asyncio.AbstractEventLoop, Address], Commands] = {}
        self._listeners: dict[asyncio.AbstractEventLoop, SessionListener | ShardedListener] = {}
        seeds = self.endpoint.seeds if isinstance(self.endpoint, ClusterEndpoint) else ()
        self.slots = SlotMap(seeds)

    def _clients(self) -> tuple[Any, Any]:
        """The publishing script and the figures client, made on first use."""
        publish, figures = self._publish, self._figures
        if publish is None or figures is None:
            with self._lock:
                if self._publish is None or self._figures is None:
                    try:
                        # Publishing is never retried: a publish whose reply was
                        # lost may have been stored, and a retry would store the
                        # event again under a new id.  A publish during an
                        # outage fails with BrokerUnavailable.
                        self._publish = self.endpoint.client().register_script(self._script)
                        # Health checks and buffer figures may retry.
                        self._figures = self.endpoint.client(Retry(_BACKOFF, 3))
                    except RedisError as exc:
                        raise BrokerUnavailable(f"Redis is unreachable: {exc}") from exc
                publish, figures = self._publish, self._figures
        return publish, figures

    def _keys(self, session_id: str) -> list[str | bytes]:
        tagged = self._tagged
        keys: list[str | bytes] = [
            buffer_key(session_id, tagged),
            channel(session_id, tagged),
            last_key(session_id, tagged),
        ]
        if self.topology != "single":
            keys.append(writer_key(session_id, tagged))
        return keys

    def publish(self, session_id: str, body: bytes) -> str:
        script = self._publish or self._clients()[0]
        keys, args = self._keys(session_id), _args(body)
        try:
            try:
                event_id = script(keys=keys, args=args)
            except PrimaryDemoted:
                # READONLY: the primary became a replica and the script did
                # not run; the next connection asks the sentinels again.
                event_id = script(keys=keys, args=args)
        except RedisError as exc:
            raise BrokerUnavailable(f"Redis publish failed: {exc}") from exc
        return event_id.decode()  # type: ignore[no-any-return]

    async def apublish(self, session_id: str, body: bytes) -> str:
        # Through the sync client: its pool replaces a connection Redis closed
        # before using it, where an asyncio pool would fail the first publish
        # after a Redis restart (and a publish must not be retried).
        return await asyncio.to_thread(self.publish, session_id, body)

    async def read(self, session_id: str, after: EventKey | None) -> BufferRead:
        loop = asyncio.get_running_loop()
        self.start(loop)  # a loop that reads buffers serves streams
        start = "" if after is None else f"{after[0]}-{after[1]}"
        tagged = self._tagged
        keys: tuple[str, ...] = (buffer_key(session_id, tagged), last_key(session_id, tagged))
        if self.replicated:
            keys += (writer_key(session_id, tagged),)
        request = command(b"EVALSHA", self._read_sha, b"%d" % len(keys), *keys, start)
        whole = command(b"EVAL", self._read_script, b"%d" % len(keys), *keys, start)
        reply = await self._call(loop, session_id, request, whole)
        moved = self.replicated and bool(reply[-1])
        if not reply[0]:
            newest = parse_id(reply[1].decode()) if reply[1] else None
            return BufferRead(exists=False, newest=newest, moved=moved)
        trimmed = parse_id(reply[2].decode())
        if trimmed == ZERO:
            trimmed = None
        events = [render(event_id, fields[1]) for event_id, fields in reply[3]]
        fences: tuple[EventKey, ...] = ()
        if self.replicated:
            fences = tuple(
                event.key
                for event, (_, fields) in zip(events, reply[3], strict=True)
                if len(fields) > 2
            )
        if trimmed is not None:
            events = [event for event in events if event.key > trimmed]  # not the marker
            fences = tuple(key for key in fences if key > trimmed)
        return BufferRead(True, parse_id(reply[1].decode()), trimmed, events, fences, moved)

    def _loop_commands(self, loop: asyncio.AbstractEventLoop) -> Commands:
        commands = self._commands.get(loop)
        if commands is None:
            commands = self._commands[loop] = Commands(self.endpoint, loop)
        return commands

    def node_commands(self, loop: asyncio.AbstractEventLoop, address: Address) -> Commands:
        """The pipelined connection of ``loop`` to a cluster node."""
        commands = self._node_commands.get((loop, address))
        if commands is None:
            commands = Commands(self.endpoint, loop, address)
            self._node_commands[loop, address] = commands
        return commands

    async def _call(
        self, loop: asyncio.AbstractEventLoop, session_id: str, request: bytes, whole: bytes
    ) -> Any:
        """A script about the session that may run twice harmlessly (a
        read, a lease): ``request`` (its EVALSHA), or ``whole`` (its EVAL)
        if Redis lacks it, on the node that holds the session's keys."""
        if self._tagged:
            return await self._read_slot(loop, key_slot(session_id.encode()), request, whole)
        return await self._read(self._loop_commands(loop), request, whole)

    async def _read(self, commands: Commands, request: bytes, whole: bytes) -> Any:
        """The script's reply, on this loop's pipelined connection
        (``resp.Commands``): a reconnect storm's reads share one socket."""
        attempt = 1
        while True:
            try:
                reply = await commands.call(request)
                if _noscript(reply):
                    # Redis restarted or flushed its scripts: send it whole.
                    reply = await commands.call(whole)
            except (OSError, EOFError, RedisError, hiredis.ProtocolError) as exc:
                if attempt == READ_ATTEMPTS:
                    raise BrokerUnavailable(f"Redis read failed: {exc}") from exc
                await asyncio.sleep(_BACKOFF.compute(attempt))
                attempt += 1
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise BrokerUnavailable(f"Redis read failed: {reply}")
            return reply

    async def _read_slot(
        self,
        loop: asyncio.AbstractEventLoop,
        slot: int,
        request: bytes,
        whole: bytes,
    ) -> Any:
        """``_read`` on the node serving ``slot``, following the cluster:
        a redirection or a lost node refreshes the slot map and reads again
        (a read changes nothing, so trying again is safe)."""
        attempt = 1
        asking: Address | None = None
        while True:
            address = asking or self.slots.owner(slot)
            try:
                if address is None:
                    await self.refresh_slots(loop)
                    address = self.slots.owner(slot)
                    if address is None:
                        raise ConnectionError(f"no node serves slot {slot}")
                commands = self.node_commands(loop, address)
                reply = await commands.call(request, asking=asking is not None)
                if _noscript(reply):
                    reply = await commands.call(whole, asking=asking is not None)
                asking = None
                if isinstance(reply, hiredis.ReplyError):
                    moved = redirection(reply)
                    if moved is None:
                        raise BrokerUnavailable(f"Redis read failed: {reply}")
                    kind, _, target = moved
                    if kind == "ASK":
                        asking = target  # being migrated: this once, ask the target
                    else:
                        self.slots.moved(slot, target)
                    raise ConnectionError(str(reply))
                return reply
            except (OSError, EOFError, RedisError, hiredis.ProtocolError) as exc:
                if attempt == READ_ATTEMPTS:
                    raise BrokerUnavailable(f"Redis read failed: {exc}") from exc
                if asking is None:
                    await asyncio.sleep(_BACKOFF.compute(attempt))
                    with contextlib.suppress(ConnectionError, OSError):
                        await self.refresh_slots(loop)  # ask the cluster again
                attempt += 1

    async def refresh_slots(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ask the cluster which node serves which slot (``CLUSTER SLOTS``)."""
        await self.slots.refresh(
            lambda address: self.node_commands(loop, address).call(command(b"CLUSTER", b"SLOTS"))
        )

    # -- stream leases -----------------------------------------------------------

    shares_leases = True

    async def take_lease(self, session_id: str, lease: str, limit: int, seconds: float) -> bool:
        key = (leases_key(session_id, self._tagged),)
        calls = _script_call(TAKE_LEASE, key, lease, str(limit), _ms(seconds))
        return bool(await self._call(asyncio.get_running_loop(), session_id, *calls))

    def drop_lease(self, session_id: str, lease: str, loop: asyncio.AbstractEventLoop) -> None:
        drop = command(b"ZREM", leases_key(session_id, self._tagged), lease)
        if not self._tagged:
            self._loop_commands(loop).call_soon(drop)
            return
        address = self.slots.owner(key_slot(session_id.encode()))
        if address is not None:  # else the lease runs out on its own
            self.node_commands(loop, address).call_soon(drop)

    async def renew_leases(self, leases: dict[str, list[str]], seconds: float) -> None:
        loop = asyncio.get_running_loop()
        held = _ms(seconds)
        if self._tagged:  # each session's leases are in a slot of their own
            for sid, ids in leases.items():
                key = (leases_key(sid, self._tagged),)
                await self._call(
                    loop, sid, *_script_call(RENEW_LEASES, key, held, str(len(ids)), *ids)
                )
            return
        # One call for all: a command per session cost the loop a write each.
        args = [held]
        for ids in leases.values():
            args += (str(len(ids)), *ids)
        keys = tuple(leases_key(sid, self._tagged) for sid in leases)
        await self._read(self._loop_commands(loop), *_script_call(RENEW_LEASES, keys, *args))

    def lease_count(self, session_id: str) -> int:
        try:
            count = self._clients()[1].register_script(COUNT_LEASES)
            return int(count(keys=[leases_key(session_id, self._tagged)]))
        except RedisError as exc:
            raise BrokerUnavailable(f"Redis read failed: {exc}") from exc

    # -- subscriptions -----------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._listener(loop)

    def _listener(self, loop: asyncio.AbstractEventLoop) -> SessionListener | ShardedListener:
        """This loop's listener, started on first use."""
        listener = self._listeners.get(loop)
        if listener is None:
            with self._lock:
                listener = self._listeners.get(loop)
                if listener is None:
                    for closed in [other for other in self._listeners if other.is_closed()]:
                        del self._listeners[closed]
                        self._commands.pop(closed, None)
                    for key in [key for key in self._node_commands if key[0].is_closed()]:
                        del self._node_commands[key]
                    deliver = functools.partial(self._deliver, loop)
                    recover = functools.partial(self._recover, loop)
                    fence = functools.partial(self._fence, loop)
                    if isinstance(self.endpoint, ClusterEndpoint):
                        refresh = functools.partial(self.refresh_slots, loop)
                        listener = ShardedListener(
                            self.endpoint, self.slots, refresh, loop, deliver, recover, fence
                        )
                    else:
                        listener = SessionListener(self.endpoint, loop, deliver, recover, fence)
                    self._listeners[loop] = listener
                    listener.start()
        return listener

    async def aclose(self) -> None:
        """Stop this loop's listener and close its connections (a loop that
        served streams and is about to end, e.g. in tests)."""
        loop = asyncio.get_running_loop()
        listener = self._listeners.pop(loop, None)
        if listener is not None:
            await listener.close()
        commands = self._commands.pop(loop, None)
        if commands is not None:
            commands.close()
        for key in [key for key in self._node_commands if key[0] is loop]:
            self._node_commands.pop(key).close()

    async def subscribe(self, session_id: str) -> None:
        await self._listener(asyncio.get_running_loop()).ensure(session_id)

    def unsubscribe(self, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        listener = self._listeners.get(loop)
        if listener is not None:
            listener.release(session_id)

    # -- figures -------------------------------------------------------------------

    def buffer_info(self, session_id: str) -> BufferInfo:
        key = buffer_key(session_id, self._tagged)
        try:
            figures = self._clients()[1]
            with figures.pipeline(transaction=True) as pipe:
                pipe.xlen(key)
                pipe.xrevrange(key, count=1)
                length, newest = pipe.execute()
        except (RedisError, BrokerUnavailable) as exc:
            raise BrokerUnavailable(f"Redis read failed: {exc}") from exc
        length = min(length, conf.BUFFER_SIZE)  # without the marker entry
        return BufferInfo(length, newest[0][0].decode() if newest else None)

    def is_connected(self) -> bool:
        """Whether Redis answers within PROBE_TIMEOUT: the server, the
        primary, or every cluster primary.  Once, without retries: health
        must answer while Redis is away (or cut off, answering nothing)."""
        try:
            probe = self._probe
            if probe is None:
                with self._lock:
                    if self._probe is None:
                        self._probe = self.endpoint.client(
                            socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT
                        )
                    probe = self._probe
            if self._tagged:
                return bool(probe.ping(target_nodes="primaries"))
            return bool(probe.ping())
        except (RedisError, RedisClusterException, OSError):
            return False

    @property
    def listener_running(self) -> bool:
        return any(listener.connected for listener in tuple(self._listeners.values()))
