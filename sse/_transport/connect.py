"""Every connection the apps open to Redis comes from here, from one
``REDIS_URL`` read by redis-py's own URL handling: publishing, figures, the
listener and the buffer reads.  So whatever ``redis.from_url`` accepts
(``rediss://`` with ``ssl_ca_certs``/``ssl_cert_reqs``, ``unix://``,
username and password, ``db``, ``socket_keepalive``, ``client_name``...)
applies to all of them alike.

The serving loop's hot sockets (the listener's, the buffer reads') speak
RESP through ``resp.RespProtocol``.  They are still made by redis-py: its
asyncio connection opens the socket and does the handshake (TLS, AUTH or
HELLO, SELECT), and only then is the transport handed to our protocol.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from .resp import RespProtocol

# Defaults for what the URL does not say (the URL's own options win).
OPTIONS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 5}


class RedisEndpoint:
    """The Redis server of one URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        # A malformed URL fails here, when the broker is made, not at the first event.
        self._pool = redis.asyncio.ConnectionPool.from_url(url, **OPTIONS)

    @property
    def socket_timeout(self) -> float:
        timeout = self._pool.connection_kwargs.get("socket_timeout")
        return float(timeout) if timeout else float(OPTIONS["socket_timeout"])

    def health_check_interval(self, default: float) -> float:
        """The URL's ``health_check_interval`` (seconds), else ``default``."""
        interval = self._pool.connection_kwargs.get("health_check_interval")
        return float(interval) if interval else default

    def client(self, retry: Retry | None = None) -> redis.Redis:
        """A sync client (thread-safe, pooled)."""
        retry = retry or Retry(NoBackoff(), 0)
        return redis.Redis.from_url(self.url, retry=retry, **OPTIONS)

    async def open(self, protocol: RespProtocol) -> None:
        """Connect ``protocol``: redis-py connects and shakes hands, then
        the transport is ours.  Raises ``redis.RedisError`` or ``OSError``."""
        connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.connect()
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
