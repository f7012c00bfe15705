"""The Redis broker: every worker process shares buffers and live events.

Publishing is one Lua script, so storing an event in the session's buffer (a
Redis stream trimmed to ``BUFFER_SIZE`` and expiring ``BUFFER_TTL`` seconds
after the last publish) and publishing it on ``sse_events:{session_id}``
happen together or not at all.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
from typing import Any

import hiredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from .._stream.events import ZERO, EventKey, parse_id, render
from .._stream.replay import BufferRead
from ..conf import conf
from ..exceptions import BrokerUnavailable
from .base import LAST_ID_TTL, Broker, BufferInfo, Deliver, Recover
from .connect import RedisEndpoint
from .keys import CHANNEL_PREFIX, buffer_key, last_key, leases_key
from .listener import SessionListener
from .resp import Commands, command

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
# while nothing was dropped).
READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, redis.call('GET', KEYS[2])} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local fields = {}
for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
local trimmed = '0-0'
if fields['entries-added'] > fields['length'] then trimmed = fields['first-entry'][1] end
if ARGV[1] == '' then return {1, fields['last-generated-id'], trimmed, {}} end
return {1, fields['last-generated-id'], trimmed, redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')}
"""

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
# KEYS: leases. ARGV: ms they are held for, then the leases.  A lease that
# ran out meanwhile (the process stalled) is taken again: its stream is open.
RENEW_LEASES = (
    NOW_MS
    + """
local expires = string.format('%.0f', now + ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expires, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1
"""
)
# KEYS: leases. -> how many have not run out.
COUNT_LEASES = (
    NOW_MS
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
"""
)


def _sha(script: str) -> bytes:
    return hashlib.sha1(script.encode()).hexdigest().encode()


_BACKOFF = ExponentialWithJitterBackoff(base=0.05, cap=0.5)
# A buffer read changes nothing: it is tried this often before it fails.
READ_ATTEMPTS = 4


_SCRIPTS = {script: _sha(script) for script in (READ, TAKE_LEASE, RENEW_LEASES)}


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _keys(session_id: str) -> list[str]:
    return [buffer_key(session_id), CHANNEL_PREFIX + session_id, last_key(session_id)]


def _args(body: bytes) -> list[Any]:
    return [conf.BUFFER_SIZE + 1, conf.BUFFER_TTL, body, LAST_ID_TTL]


class RedisBroker(Broker):
    backend = "redis"

    def __init__(self, url: str, deliver: Deliver, recover: Recover) -> None:
        super().__init__(deliver)
        self._recover = recover
        self.endpoint = RedisEndpoint(url)
        # Publishing is never retried: a publish whose reply was lost may have
        # been stored, and a retry would store the event again under a new
        # id.  A publish during an outage fails with BrokerUnavailable.
        self._client = self.endpoint.client()
        self._publish = self._client.register_script(PUBLISH)
        # Health checks and buffer figures may retry.
        self._figures = self.endpoint.client(Retry(_BACKOFF, 3))
        self._count_leases = self._figures.register_script(COUNT_LEASES)
        self._lock = threading.Lock()
        self._commands: dict[asyncio.AbstractEventLoop, Commands] = {}
        self._listeners: dict[asyncio.AbstractEventLoop, SessionListener] = {}

    def publish(self, session_id: str, body: bytes) -> str:
        try:
            event_id = self._publish(keys=_keys(session_id), args=_args(body))
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
        reply = await self._eval(loop, READ, buffer_key(session_id), last_key(session_id), start)
        if not reply[0]:
            return BufferRead(
                exists=False, newest=parse_id(reply[1].decode()) if reply[1] else None
            )
        trimmed = parse_id(reply[2].decode())
        if trimmed == ZERO:
            trimmed = None
        events = [render(event_id, fields[1]) for event_id, fields in reply[3]]
        if trimmed is not None:
            events = [event for event in events if event.key > trimmed]  # not the marker
        return BufferRead(True, parse_id(reply[1].decode()), trimmed, events)

    def _commands_of(self, loop: asyncio.AbstractEventLoop) -> Commands:
        """This loop's pipelined connection (``resp.Commands``): a reconnect
        storm's reads share one socket."""
        commands = self._commands.get(loop)
        if commands is None:
            commands = self._commands[loop] = Commands(self.endpoint, loop)
        return commands

    async def _eval(
        self, loop: asyncio.AbstractEventLoop, script: str, *keys_and_args: str | bytes
    ) -> Any:
        """A read script's reply (``script`` takes 2 keys) or, for the lease
        scripts, 1 key: retried, since they may run twice harmlessly."""
        commands = self._commands_of(loop)
        numkeys = b"2" if script is READ else b"1"
        request = command(b"EVALSHA", _SCRIPTS[script], numkeys, *keys_and_args)
        attempt = 1
        while True:
            try:
                reply = await commands.call(request)
                if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
                    # Redis restarted or flushed its scripts: send it whole.
                    reply = await commands.call(command(b"EVAL", script, numkeys, *keys_and_args))
            except (OSError, EOFError, RedisError, hiredis.ProtocolError) as exc:
                if attempt == READ_ATTEMPTS:
                    raise BrokerUnavailable(f"Redis read failed: {exc}") from exc
                await asyncio.sleep(_BACKOFF.compute(attempt))
                attempt += 1
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise BrokerUnavailable(f"Redis read failed: {reply}")
            return reply

    # -- stream leases -----------------------------------------------------------

    shares_leases = True

    async def take_lease(self, session_id: str, lease: str, limit: int, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        key = leases_key(session_id)
        reply = await self._eval(loop, TAKE_LEASE, key, lease, str(limit), _ms(seconds))
        return bool(reply)

    def drop_lease(self, session_id: str, lease: str, loop: asyncio.AbstractEventLoop) -> None:
        self._commands_of(loop).call_soon(command(b"ZREM", leases_key(session_id), lease))

    async def renew_leases(self, leases: dict[str, list[str]], seconds: float) -> None:
        loop = asyncio.get_running_loop()
        held = _ms(seconds)
        await asyncio.gather(
            *(
                self._eval(loop, RENEW_LEASES, leases_key(sid), held, *ids)
                for sid, ids in leases.items()
            )
        )

    def lease_count(self, session_id: str) -> int:
        try:
            return int(self._count_leases(keys=[leases_key(session_id)]))
        except RedisError as exc:
            raise BrokerUnavailable(f"Redis read failed: {exc}") from exc

    # -- subscriptions -----------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._listener(loop)

    def _listener(self, loop: asyncio.AbstractEventLoop) -> SessionListener:
        """This loop's listener, started on first use."""
        listener = self._listeners.get(loop)
        if listener is None:
            with self._lock:
                listener = self._listeners.get(loop)
                if listener is None:
                    for closed in [other for other in self._listeners if other.is_closed()]:
                        del self._listeners[closed]
                        self._commands.pop(closed, None)
                    listener = SessionListener(
                        self.endpoint,
                        loop,
                        functools.partial(self._deliver, loop),
                        functools.partial(self._recover, loop),
                    )
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

    async def subscribe(self, session_id: str) -> None:
        await self._listener(asyncio.get_running_loop()).ensure(session_id)

    def unsubscribe(self, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        listener = self._listeners.get(loop)
        if listener is not None:
            listener.release(session_id)

    # -- figures -------------------------------------------------------------------

    def buffer_info(self, session_id: str) -> BufferInfo:
        key = buffer_key(session_id)
        try:
            with self._figures.pipeline(transaction=True) as pipe:
                pipe.xlen(key)
                pipe.xrevrange(key, count=1)
                length, newest = pipe.execute()
        except RedisError as exc:
            raise BrokerUnavailable(f"Redis read failed: {exc}") from exc
        length = min(length, conf.BUFFER_SIZE)  # without the marker entry
        return BufferInfo(length, newest[0][0].decode() if newest else None)

    def is_connected(self) -> bool:
        try:
            return bool(self._figures.ping())
        except RedisError:
            return False

    @property
    def listener_running(self) -> bool:
        return any(listener.connected for listener in tuple(self._listeners.values()))
