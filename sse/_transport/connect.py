"""Every connection the apps open to Redis comes from here, from one
``REDIS_URL`` read by redis-py's own URL handling: publishing, figures, the
listener and the buffer reads.  So whatever ``redis.from_url`` accepts
(``rediss://`` with ``ssl_ca_certs``/``ssl_cert_reqs``, ``unix://``,
username and password, ``db``, ``socket_keepalive``, ``client_name``...)
applies to all of them alike.

Three topologies, by scheme:

- ``redis://``, ``rediss://``, ``unix://``: one server.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db]``
  (``rediss+sentinel://``): the primary the sentinels name.  Every socket
  asks them on connect and checks the server's ``ROLE``; publishing goes
  through redis-py's ``Sentinel.master_for``.
- ``redis+cluster://[user:password@]host:port[,host:port...]``
  (``rediss+cluster://``): a Redis Cluster, through ``RedisCluster`` for
  publishing and to any node the slot map names for the sockets.

The host list is parsed here (redis-py has no URL form for these); the rest
of the URL, query options included, goes through redis-py's ``parse_url``
as a one-server URL, so options mean the same in every topology.

The serving loop's hot sockets (the listener's, the buffer reads') speak
RESP through ``resp.RespProtocol``.  They are still made by redis-py: its
asyncio connection opens the socket and does the handshake (TLS, AUTH or
HELLO, SELECT), and only then is the transport handed to our protocol.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
import redis.asyncio
import redis.cluster
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from .resp import RespProtocol

# Defaults for what the URL does not say (the URL's own options win).
OPTIONS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 5}

Address = tuple[str, int]
# Publishing and figures: one server's or the primary's client, or a cluster's.
SyncClient = redis.Redis | redis.cluster.RedisCluster

SENTINEL_PORT = 26379
REDIS_PORT = 6379
# Query options of ours, not redis-py's: credentials of the sentinels
# themselves (the URL's user and password are the Redis servers').
SENTINEL_AUTH = ("sentinel_username", "sentinel_password")
# What the sentinels get of the URL's options: how to reach a server, not
# which database or client name to use there.
_SENTINEL_OPTION_PREFIXES = ("socket_", "ssl_")


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A ``REDIS_URL`` taken apart.  ``single`` is the one-server URL of
    the data nodes' options, for redis-py's own parsing (its host is that
    of the first node, replaced for each node)."""

    topology: str  # "single" | "sentinel" | "cluster"
    single: str
    hosts: tuple[Address, ...] = ()
    master_name: str = ""
    sentinel_options: dict[str, Any] = field(default_factory=dict)


def parse_redis_url(url: str) -> RedisURL:
    """Raises ValueError, saying what is wrong, for a URL no topology accepts."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        _url_options(url)  # raises ValueError for bad options
        return RedisURL("single", url)
    base, _, topology = scheme.partition("+")
    if base not in ("redis", "rediss") or topology not in ("sentinel", "cluster"):
        raise ValueError(
            f"unknown scheme {parts.scheme!r}: use redis://, rediss://, unix://, "
            "redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
        )
    credentials, _, hostlist = parts.netloc.rpartition("@")
    default_port = SENTINEL_PORT if topology == "sentinel" else REDIS_PORT
    hosts = tuple(_address(host, default_port) for host in hostlist.split(","))
    segments = [unquote(segment) for segment in parts.path.split("/") if segment]
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {name: value for name, value in query if name in SENTINEL_AUTH}
    theirs = urlencode([(name, value) for name, value in query if name not in SENTINEL_AUTH])
    if topology == "sentinel":
        if not segments or len(segments) > 2:
            raise ValueError("a Sentinel URL names the primary: .../MASTER_NAME[/db]")
        master_name, db = segments[0], segments[1] if len(segments) == 2 else "0"
    else:
        if ours:
            raise ValueError(f"{', '.join(ours)}: only for Sentinel URLs")
        if segments not in ([], ["0"]):
            raise ValueError("Redis Cluster has only database 0: no path after the hosts")
        master_name, db = "", "0"
    if not db.isdigit():
        raise ValueError(f"the database must be a number, not {db!r}")
    userinfo = credentials + "@" if credentials else ""
    host, port = hosts[0]
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    single = f"{base}://{userinfo}{netloc}/{db}" + (f"?{theirs}" if theirs else "")
    options = _url_options(single)  # raises ValueError for bad options
    if topology == "cluster" and options.get("db", 0) != 0:
        raise ValueError("Redis Cluster has only database 0")
    sentinel_options: dict[str, Any] = {
        name: value for name, value in options.items() if name.startswith(_SENTINEL_OPTION_PREFIXES)
    }
    if base == "rediss":
        sentinel_options["ssl"] = True
    if "sentinel_username" in ours:
        sentinel_options["username"] = ours["sentinel_username"]
    if "sentinel_password" in ours:
        sentinel_options["password"] = ours["sentinel_password"]
    return RedisURL(topology, single, hosts, master_name, sentinel_options)


def _url_options(url: str) -> dict[str, Any]:
    """redis-py's reading of a one-server URL; ValueError if it is malformed."""
    options: dict[str, Any] = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    return options


def _address(text: str, default_port: int) -> Address:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError("a host is missing in the host list")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"bad port {port!r} for host {host}")
    return host, int(port) if port else default_port


class PrimaryDemoted(redis.ConnectionError):
    """The server answered READONLY: it is a replica now, and the command did not run."""


class _PrimaryConnection(redis.sentinel.SentinelManagedConnection):
    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ConnectionError as exc:
            if str(exc) == "The previous master is now a slave":  # redis-py's READONLY handling
                raise PrimaryDemoted(str(exc)) from exc
            raise


class _PrimarySSLConnection(_PrimaryConnection, redis.SSLConnection):
    pass


class RedisEndpoint:
    """The Redis server of one URL."""

    topology = "single"

    def __init__(self, url: str, parsed: RedisURL | None = None) -> None:
        self.url = url
        self.parsed = parsed or parse_redis_url(url)
        # A malformed URL fails here, when the broker is made, not at the first event.
        self._pool = redis.asyncio.ConnectionPool.from_url(self.parsed.single, **OPTIONS)

    @property
    def socket_timeout(self) -> float:
        timeout = self._pool.connection_kwargs.get("socket_timeout")
        return float(timeout) if timeout else float(OPTIONS["socket_timeout"])

    def health_check_interval(self, default: float) -> float:
        """The URL's ``health_check_interval`` (seconds), else ``default``."""
        interval = self._pool.connection_kwargs.get("health_check_interval")
        return float(interval) if interval else default

    def client(self, retry: Retry | None = None, **options: Any) -> SyncClient:
        """A sync client (thread-safe, pooled); ``options`` replace the
        defaults (a probe's short timeouts)."""
        retry = retry or Retry(NoBackoff(), 0)
        return redis.Redis.from_url(self.url, retry=retry, **{**OPTIONS, **options})

    async def open(self, protocol: RespProtocol, address: Address | None = None) -> None:
        """Connect ``protocol`` (to ``address``, a node of a cluster): redis-py
        connects and shakes hands, then the transport is ours.  Raises
        ``redis.RedisError`` or ``OSError``."""
        await self._adopt(protocol, self._pool.make_connection())  # type: ignore[no-untyped-call]

    def _connection(self, address: Address) -> Any:
        """An unconnected ``redis.asyncio`` connection to ``address`` with the URL's options."""
        kwargs = {**self._pool.connection_kwargs, "host": address[0], "port": address[1]}
        return self._pool.connection_class(**kwargs)

    async def _adopt(self, protocol: RespProtocol, connection: Any, *checks: str) -> None:
        """Connect, run ``checks`` (``"ROLE"``, ``"VERSION"``), hand the socket over."""
        task = asyncio.current_task()
        cancels = 0 if task is None else task.cancelling()
        try:
            await connection.connect()
            for check in checks:
                await self._check(connection, check)
            if task is not None and task.cancelling() > cancels:
                # redis-py writes with asyncio.wait_for, which on Python 3.11
                # returns instead of raising when a cancellation comes in the
                # turn its wait ends: the cancellation still stands.
                raise asyncio.CancelledError
        except BaseException as exc:
            # Cancelled or failed mid-handshake: redis-py may still hold the socket.
            if connection._writer is not None:
                connection._writer.transport.abort()
            connection._reader = connection._writer = None
            if isinstance(exc, redis.AuthenticationError):
                raise ConnectionError(f"Redis AUTH failed: {exc}") from exc
            if isinstance(exc, redis.TimeoutError):
                raise TimeoutError(f"no reply from Redis within {self.socket_timeout:g} s") from exc
            raise

        reader, writer = connection._reader, connection._writer
        assert reader is not None
        assert writer is not None
        # The connection object no longer owns the socket (nor closes it).
        connection._reader = connection._writer = None
        if reader._buffer:
            writer.transport.abort()
            raise ConnectionError("Redis sent data nobody asked for during the handshake")
        protocol.adopt(writer)

    async def _check(self, connection: Any, check: str) -> None:
        where = f"{connection.host}:{connection.port}"
        if check == "ROLE":
            await connection.send_command("ROLE")
            role = await connection.read_response()
            if not role or role[0] != b"master":
                # The sentinels named a server that is no longer the primary
                # (a failover under way): a replica takes subscriptions but
                # stores nothing; ask the sentinels again.
                raise ConnectionError(f"Redis at {where} is not the primary")
        elif check == "VERSION":
            await connection.send_command("INFO", "server")
            info = await connection.read_response()
            version = _redis_version(info)
            if version < (7,):
                raise ConnectionError(
                    f"Redis Cluster needs Redis 7 or later (sharded pub/sub); {where} runs "
                    + ".".join(map(str, version))
                )


def _redis_version(info: Any) -> tuple[int, ...]:
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("redis_version:"):
            return tuple(int(part) for part in line.split(":", 1)[1].split(".") if part.isdigit())
    return ()


class SentinelEndpoint(RedisEndpoint):
    """The primary that the sentinels of the URL name, wherever it is now."""

    topology = "sentinel"

    def __init__(self, url: str, parsed: RedisURL) -> None:
        super().__init__(url, parsed)
        self.master_name = parsed.master_name
        options = _url_options(parsed.single)
        for name in ("host", "port", "connection_class"):
            options.pop(name, None)
        self._options = {**OPTIONS, **options}
        self._tls = parsed.single.startswith("rediss:")
        self.sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(parsed.hosts), sentinel_kwargs={**OPTIONS, **parsed.sentinel_options}
        )

    def client(self, retry: Retry | None = None, **options: Any) -> SyncClient:
        """A client of the primary: a new connection asks the sentinels
        where it is, one to a demoted primary raises ``PrimaryDemoted``."""
        client: redis.Redis = self.sentinel.master_for(  # type: ignore[no-untyped-call]
            self.master_name,
            connection_class=_PrimarySSLConnection if self._tls else _PrimaryConnection,
            retry=retry or Retry(NoBackoff(), 0),
            **{**self._options, **options},
        )
        return client

    async def open(self, protocol: RespProtocol, address: Address | None = None) -> None:
        try:
            primary = await asyncio.to_thread(self.sentinel.discover_master, self.master_name)
        except redis.sentinel.MasterNotFoundError as exc:
            raise ConnectionError(str(exc)) from exc
        await self._adopt(protocol, self._connection(primary), "ROLE")


class ClusterEndpoint(RedisEndpoint):
    """A Redis Cluster: its seed nodes, and sockets to any node."""

    topology = "cluster"

    def __init__(self, url: str, parsed: RedisURL) -> None:
        super().__init__(url, parsed)
        self.seeds = parsed.hosts
        options = _url_options(parsed.single)
        for name in ("host", "port", "db", "connection_class"):
            options.pop(name, None)
        if parsed.single.startswith("rediss:"):
            options["ssl"] = True  # RedisCluster's way of saying SSLConnection
        self._options = {**OPTIONS, **options}

    def client(self, retry: Retry | None = None, **options: Any) -> SyncClient:
        """A ``RedisCluster``: routes each command by its keys, follows
        MOVED and ASK (the command did not run) and, given ``retry``,
        retries after a lost connection; without, it does not."""
        return redis.cluster.RedisCluster(
            startup_nodes=[
                redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in self.seeds
            ],
            retry=retry or Retry(NoBackoff(), 0),
            **{**self._options, **options},
        )

    async def open(self, protocol: RespProtocol, address: Address | None = None) -> None:
        assert address is not None, "a cluster socket goes to a node"
        await self._adopt(protocol, self._connection(address), "VERSION")


def endpoint(url: str) -> RedisEndpoint:
    """The endpoint of ``url``'s topology; raises ValueError for a malformed URL."""
    parsed = parse_redis_url(url)
    if parsed.topology == "sentinel":
        return SentinelEndpoint(url, parsed)
    if parsed.topology == "cluster":
        return ClusterEndpoint(url, parsed)
    return RedisEndpoint(url, parsed)


def display(address: Address) -> str:
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
