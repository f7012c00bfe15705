"""SSE load generator: thousands of streams from one process on one core.

Raw asyncio protocols (uvloop when installed), a minimal HTTP/1.1 response
reader (status line, headers, chunked or close-delimited body) and a minimal
SSE parser.  Every event a client sees is recorded as ``seq -> receive time``
(``"q":<seq>`` in the payload); latencies and losses are computed against the
publisher's log, whose ``t`` is stamped with the same monotonic clock.

Driven by run.py over stdin/stdout, one JSON object per line:

  {"cmd": "connect", "n": 5000, "concurrency": 256, "timeout": 60}
  {"cmd": "reset"}
  {"cmd": "collect", "log": "/path/pub.bin", "drain": 3.0, "since": <ns>}
  {"cmd": "drop", "n": 2000}
  {"cmd": "reconnect", "n": 2000, "timeout": 30}
  {"cmd": "storm_report", "log": "/path/pub.bin", "drain": 10.0}
  {"cmd": "churn", "per_tick": 20, "every": 1.0, "timeout": 10}
  {"cmd": "churn_stop", "timeout": 30}
  {"cmd": "missing", "log": "/path/pub.bin", "older_than": 5.0}
  {"cmd": "close"}

``churn`` (bench/soak.py) closes ``per_tick`` streams every ``every`` seconds
and reopens each with its Last-Event-ID, in the background until
``churn_stop``; ``missing`` counts the events of a log still being written
that are older than ``older_than`` seconds and have not arrived.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import random
import re
import resource
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SEQ_RE = re.compile(rb'"q": ?(\d+)')
monotonic_ns = time.monotonic_ns


def raise_nofile(target: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(target, soft)
    for limit in (want, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(limit, hard)))
            return limit
        except (ValueError, OSError):
            continue
    return soft


class Stats:
    """What every client reports to: receive times per sequence number."""

    def __init__(self) -> None:
        self.recv: dict[int, int] = {}
        self.dups = 0
        self.unparsed = 0
        self.ended = 0
        self.errors: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class SSEClient(asyncio.Protocol):
    __slots__ = (
        "buf",
        "chunk_left",
        "chunked",
        "closed",
        "events",
        "last_id",
        "ready",
        "request",
        "sse",
        "state",
        "stats",
        "status",
        "transport",
    )

    def __init__(self, stats: Stats, request: bytes, ready: asyncio.Future[int]) -> None:
        self.stats = stats
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.state = 0  # 0 headers, 1 body
        self.buf = bytearray()
        self.chunked = False
        self.chunk_left = -1  # -1: reading a size line
        self.sse = bytearray()
        self.last_id: bytes | None = None
        self.status = 0
        self.ready = ready
        self.closed: asyncio.Future[None] = ready.get_loop().create_future()
        self.events = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(self.status or -1)
        elif self.state == 1:
            self.stats.ended += 1
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.state == 0:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.transport.close()  # type: ignore[union-attr]
                return
            head = bytes(self.buf[:end]).lower()
            rest = bytes(self.buf[end + 4 :])
            self.buf = bytearray()
            try:
                self.status = int(head.split(b" ", 2)[1])
            except (IndexError, ValueError):
                self.status = -2
            self.chunked = b"transfer-encoding: chunked" in head
            self.state = 1
            if not self.ready.done():
                self.ready.set_result(self.status)
            if self.status != 200:
                self.transport.close()  # type: ignore[union-attr]
                return
            if not rest:
                return
            data = rest
        if self.chunked:
            self._dechunk(data)
        else:
            self._feed(data)

    def _dechunk(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        out = []
        for _ in range(1_000_000):  # bounded; a chunk per iteration
            if self.chunk_left < 0:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
                if not size_text:  # the CRLF after a chunk's data
                    pos = eol + 2
                    continue
                size = int(size_text, 16)
                pos = eol + 2
                if size == 0:
                    self.transport.close()  # type: ignore[union-attr]
                    break
                self.chunk_left = size
            take = min(self.chunk_left, n - pos)
            if take <= 0:
                break
            out.append(bytes(buf[pos : pos + take]))
            pos += take
            self.chunk_left -= take
            if self.chunk_left == 0:
                self.chunk_left = -1
        del buf[:pos]
        if out:
            self._feed(b"".join(out))

    def _feed(self, data: bytes) -> None:
        sse = self.sse
        sse += data.replace(b"\r", b"") if b"\r" in data else data
        start = 0
        for _ in range(1_000_000):
            end = sse.find(b"\n\n", start)
            if end < 0:
                break
            self._event(bytes(sse[start:end]))
            start = end + 2
        if start:
            del sse[:start]

    def _event(self, block: bytes) -> None:
        now = monotonic_ns()
        seq = -1
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                match = SEQ_RE.search(line)
                if match is not None:
                    seq = int(match[1])
            elif line.startswith(b"id:"):
                self.last_id = line[3:].strip()
        self.events += 1
        if seq < 0:
            return
        recv = self.stats.recv
        if seq in recv:
            self.stats.dups += 1
        else:
            recv[seq] = now


class Generator:
    def __init__(self, host: str, port: int, paths: list[str]) -> None:
        self.host = host
        self.port = port
        self.paths = paths
        self.stats = Stats()
        self.clients: list[SSEClient | None] = [None] * len(paths)
        self.last_ids: list[bytes | None] = [None] * len(paths)
        self.reconnect_start = 0
        self.churner: asyncio.Task[None] | None = None
        self.churn_stats: dict[str, int] = {}
        self.reopen: set[int] = set()  # streams to open again: failed or ended
        self.tail: dict[str, tuple[int, list[tuple[int, int]]]] = {}

    def _request(self, i: int, last_id: bytes | None) -> bytes:
        extra = b"Last-Event-ID: %s\r\n" % last_id if last_id else b""
        return (
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\n%s\r\n"
            % (self.paths[i].encode(), self.host.encode(), self.port, extra)
        )

    async def _open(self, i: int, last_id: bytes | None, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[int] = loop.create_future()
        client = SSEClient(self.stats, self._request(i, last_id), ready)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: client, self.host, self.port), timeout
            )
            status = await asyncio.wait_for(ready, timeout)
        except (OSError, TimeoutError) as exc:
            self.stats.error(type(exc).__name__)
            if client.transport is not None:
                client.transport.abort()
            return -1
        except asyncio.CancelledError:
            # churn_stop: a stream left open here would be a second one of
            # its session once the session is opened again (duplicates).
            if client.transport is not None:
                client.transport.abort()
            raise
        if status == 200:
            self.clients[i] = client
        else:
            self.stats.error(f"http_{status}")
        return status

    async def connect(
        self, indexes: list[int], concurrency: int, timeout: float, last_ids: bool = False
    ) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        sem = asyncio.Semaphore(max(1, concurrency))
        results: dict[int, int] = {}

        async def one(i: int) -> None:
            async with sem:
                left = deadline - time.monotonic()
                if left <= 0:
                    results[i] = -3
                    return
                results[i] = await self._open(i, self.last_ids[i] if last_ids else None, left)

        await asyncio.gather(*(one(i) for i in indexes))
        ok = sum(1 for status in results.values() if status == 200)
        return {
            "connected": ok,
            "failed": len(indexes) - ok,
            "secs": round(time.monotonic() - started, 3),
            "errors": dict(self.stats.errors),
        }

    async def drop(self, n: int) -> dict[str, Any]:
        waits = []
        for i in range(min(n, len(self.clients))):
            client = self.clients[i]
            if client is None:
                continue
            self.last_ids[i] = client.last_id
            self.clients[i] = None
            if client.transport is not None:
                client.transport.abort()
            waits.append(client.closed)
        if waits:
            await asyncio.wait(waits, timeout=10)
        return {"dropped": len(waits), "with_last_id": sum(1 for x in self.last_ids[:n] if x)}

    async def reconnect(self, n: int, timeout: float) -> dict[str, Any]:
        self.reconnect_start = monotonic_ns()
        result = await self.connect(list(range(n)), concurrency=n, timeout=timeout, last_ids=True)
        result["reconnect_start"] = self.reconnect_start
        return result

    def reset(self) -> dict[str, Any]:
        self.stats.recv = {}
        self.stats.dups = 0
        self.stats.ended = 0
        self.stats.errors = {}
        return {"ok": True}

    @staticmethod
    def load_log(path: str) -> tuple[array.array[int], array.array[int], array.array[int]]:
        raw = array.array("q")
        with open(path, "rb") as f:
            data = f.read()
        # The publisher may be writing: whole records only.
        raw.frombytes(data[: len(data) - len(data) % (3 * raw.itemsize)])
        return raw[0::3], raw[1::3], raw[2::3]

    def _held(self, sid: int) -> bool:
        """Whether this generator holds a stream of session ``sid``."""
        return sid < len(self.clients) and self.clients[sid] is not None

    async def _drain(self, expected: Iterable[int], drain: float) -> None:
        """Wait up to ``drain`` seconds for every expected event to arrive."""
        recv = self.stats.recv
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline:
            if all(seq in recv for seq in expected):
                break
            await asyncio.sleep(0.05)

    async def collect(self, log: str, drain: float) -> dict[str, Any]:
        seqs, sids, stamps = self.load_log(log)
        expected = {seq for seq, sid in zip(seqs, sids, strict=True) if self._held(sid)}
        await self._drain(expected, drain)
        recv = self.stats.recv
        latencies = sorted(
            recv[seq] - t
            for seq, t in zip(seqs, stamps, strict=True)
            if seq in recv and seq in expected
        )
        delivered = len(latencies)
        result: dict[str, Any] = {
            "published": len(seqs),
            "expected": len(expected),
            "delivered": delivered,
            "lost": len(expected) - delivered,
            "dups": self.stats.dups,
            "ended": self.stats.ended,
            "open": sum(1 for c in self.clients if c is not None and not c.closed.done()),
            "errors": dict(self.stats.errors),
        }
        result.update(_percentiles(latencies))
        return result

    async def storm_report(self, log: str, drain: float) -> dict[str, Any]:
        """Caught up: every event published before the reconnect began has
        reached its client; time from the reconnect start to the last one."""
        seqs, sids, stamps = self.load_log(log)
        n = sum(1 for c in self.clients if c is not None)
        start = self.reconnect_start
        expected = [seq for seq, sid in zip(seqs, sids, strict=True) if self._held(sid)]
        before = {
            seq
            for seq, sid, t in zip(seqs, sids, stamps, strict=True)
            if t < start and self._held(sid)
        }
        await self._drain(expected, drain)
        recv = self.stats.recv
        caught = [recv[seq] for seq in before if seq in recv]
        missed_before = len(before) - len(caught)
        last = max((t for t in caught if t >= start), default=start)
        return {
            "clients": n,
            "published": len(seqs),
            "expected": len(expected),
            "missed": sum(1 for seq in expected if seq not in recv),
            "missed_while_away": missed_before,
            "caught_up_secs": None if missed_before else round((last - start) / 1e9, 3),
            "dups": self.stats.dups,
            "errors": dict(self.stats.errors),
        }

    # -- churn (bench/soak.py) ----------------------------------------------------

    def churn(self, per_tick: int, every: float, timeout: float) -> dict[str, Any]:
        if self.churner is None:
            self.churn_stats = {
                "ticks": 0,
                "closed": 0,
                "reopened": 0,
                "reopen_failed": 0,
                "ended_by_server": 0,
                "late_ticks": 0,
            }
            self.churner = asyncio.get_running_loop().create_task(
                self._churn(per_tick, every, timeout)
            )
        return {"churning": True}

    async def _churn(self, per_tick: int, every: float, timeout: float) -> None:
        rng = random.Random(7)
        stats = self.churn_stats
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += every
            for i, client in enumerate(self.clients):
                if client is not None and client.closed.done():
                    # Ended by the server: open it again like a browser would.
                    stats["ended_by_server"] += 1
                    self.last_ids[i] = client.last_id
                    self.clients[i] = None
                    self.reopen.add(i)
            # Only streams that have seen an event: reopened without an id,
            # a stream would miss what was published meanwhile, by design.
            candidates = [
                i for i, c in enumerate(self.clients) if c is not None and c.last_id is not None
            ]
            picked = rng.sample(candidates, min(per_tick, len(candidates)))
            retry, self.reopen = self.reopen, set()
            await asyncio.gather(
                *(self._cycle(i, abort=rng.random() < 0.5) for i in picked),
                *(self._reopen(i, timeout) for i in retry),
            )
            await asyncio.gather(*(self._reopen(i, timeout) for i in picked))
            stats["ticks"] += 1
            delay = next_tick - loop.time()
            if delay < 0:
                stats["late_ticks"] += 1
                next_tick = loop.time()
            await asyncio.sleep(max(0.0, delay))

    async def _cycle(self, i: int, abort: bool) -> None:
        """Close stream ``i``: half of them with a FIN, half with a reset."""
        client = self.clients[i]
        if client is None or client.transport is None:
            return
        self.last_ids[i] = client.last_id
        self.clients[i] = None
        if abort:
            client.transport.abort()
        else:
            client.transport.close()
        self.churn_stats["closed"] += 1
        await asyncio.wait([client.closed], timeout=5)

    async def _reopen(self, i: int, timeout: float) -> None:
        if self.clients[i] is not None:
            return
        status = await self._open(i, self.last_ids[i], timeout)
        if status == 200:
            self.churn_stats["reopened"] += 1
        else:
            self.churn_stats["reopen_failed"] += 1
            self.reopen.add(i)

    async def churn_stop(self, timeout: float) -> dict[str, Any]:
        """Stop churning; open again whatever is closed, until ``timeout``."""
        if self.churner is not None:
            self.churner.cancel()
            (outcome,) = await asyncio.gather(self.churner, return_exceptions=True)
            self.churner = None
            if isinstance(outcome, Exception):
                self.churn_stats["failed"] = 1
            # Cancelled between closing streams and opening them again.
            self.reopen |= {i for i, client in enumerate(self.clients) if client is None}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, client in enumerate(self.clients):
                if client is not None and client.closed.done():
                    self.churn_stats["ended_by_server"] += 1
                    self.last_ids[i] = client.last_id
                    self.clients[i] = None
                    self.reopen.add(i)
            if not self.reopen:
                break
            retry, self.reopen = self.reopen, set()
            await asyncio.gather(*(self._reopen(i, timeout) for i in retry))
            if self.reopen:
                await asyncio.sleep(1.0)
        return {**self.churn_stats, "closed_at_stop": len(self.reopen), **self.status()}

    def missing(self, log: str, older_than: float) -> dict[str, Any]:
        """Events in the log (still being written) older than ``older_than``
        seconds that no client has seen; read incrementally."""
        done, pending = self.tail.get(log, (0, []))
        try:
            seqs, _, stamps = self.load_log(log)
        except FileNotFoundError:  # the publisher has not started yet
            seqs = stamps = array.array("q")
        pending.extend(zip(seqs[done:], stamps[done:], strict=True))
        done = len(seqs)
        recv = self.stats.recv
        arrived = sorted(recv[seq] - t for seq, t in pending if seq in recv)
        pending = [(seq, t) for seq, t in pending if seq not in recv]
        self.tail[log] = (done, pending)
        cutoff = monotonic_ns() - int(older_than * 1e9)
        churner = self.churner
        return {
            "published": done,
            "missing": sum(1 for _, t in pending if t < cutoff),
            "arrived": len(arrived),  # since the previous check, and their latency:
            **_percentiles(arrived),
            "churn_failed": repr(churner.exception())[:300]
            if churner is not None and churner.done() and not churner.cancelled()
            else None,
            "received": len(recv),
            "dups": self.stats.dups,
            "errors": dict(self.stats.errors),
            "churn": dict(self.churn_stats),
            **self.status(),
        }

    def status(self) -> dict[str, Any]:
        held = [c for c in self.clients if c is not None]
        open_ = sum(1 for c in held if not c.closed.done())
        return {
            "held": len(held),
            "open": open_,
            "closed_by_server": len(held) - open_,
            "errors": dict(self.stats.errors),
        }

    def close(self) -> None:
        for client in self.clients:
            if client is not None and client.transport is not None:
                client.transport.abort()


def _percentiles(values: list[int]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] / 1e6, 2)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(values[-1] / 1e6, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--paths", required=True, help="JSON file: list of request paths")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost"):
        raise SystemExit("loadgen connects to 127.0.0.1 only")
    paths = json.loads(Path(args.paths).read_text())  # noqa: ASYNC240 -- before any stream
    limit = raise_nofile()
    gen = Generator("127.0.0.1", args.port, paths)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _reply({"ready": True, "nofile": limit, "loop": type(loop).__module__})
    for _ in range(10_000):  # bounded command loop
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        name = cmd["cmd"]
        if name == "connect":
            start = cmd.get("start", 0)
            out = await gen.connect(
                list(range(start, start + cmd["n"])),
                cmd.get("concurrency", 256),
                cmd.get("timeout", 60),
            )
        elif name == "reset":
            out = gen.reset()
        elif name == "collect":
            out = await gen.collect(cmd["log"], cmd.get("drain", 3.0))
        elif name == "drop":
            out = await gen.drop(cmd["n"])
        elif name == "reconnect":
            out = await gen.reconnect(cmd["n"], cmd.get("timeout", 30))
        elif name == "storm_report":
            out = await gen.storm_report(cmd["log"], cmd.get("drain", 10.0))
        elif name == "status":
            out = gen.status()
        elif name == "churn":
            out = gen.churn(cmd.get("per_tick", 20), cmd.get("every", 1.0), cmd.get("timeout", 10))
        elif name == "churn_stop":
            out = await gen.churn_stop(cmd.get("timeout", 30))
        elif name == "missing":
            out = gen.missing(cmd["log"], cmd.get("older_than", 5.0))
        elif name == "close":
            gen.close()
            _reply({"closed": True})
            break
        else:
            out = {"error": f"unknown command {name}"}
        _reply(out)


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
