"""Permission round trip on our server, without human time.

An agent task per session calls ``permissions.arequest_permission``; a
browser-like client per session holds the event stream, and the moment it
sees ``permission_request`` it POSTs the answer to
``/agent_backend/api/sse/permission-response/{session_id}``.  Measured: the
agent's wait, from the call to the returned decision.  Agents and clients run
here (core 1); the server is the one under test (core 0).

Two loads:

- ``steady`` (the default): every session's agent asks, gets its decision,
  then works for ``--think-ms`` (±50 %, random) before the next tool, its
  first ask at a random moment of the first interval.  100 sessions asking
  about once a second each: the overhead of one approval while the others
  go on, which is what a person waiting for an agent sees.
- ``burst``: every agent asks at the same instant, ``--rounds`` times: 100
  approvals queue up on the server's core, and the latencies measure that
  queue (the last one waits for the 99 before it).

    DJANGO_SETTINGS_MODULE=bench.settings ... python bench/perm_roundtrip.py \
        --port 8000 --sessions 100 --rounds 5 --paths paths-ours.json [--mode burst]
"""

# ruff: noqa: T201 -- a command-line tool: its output is printed
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import django

django.setup()

from loadgen import SSEClient, Stats, _percentiles, raise_nofile  # noqa: E402

from permissions import arequest_permission  # noqa: E402

# request_id -> moments (monotonic ns) of its round trip, for the segments.
marks: dict[str, dict[str, int]] = {}


class BrowserClient(SSEClient):
    """Answers every permission request it sees, at once."""

    answer: Any = None  # set per instance: async callable(session_id, request_id)
    session_id = ""

    def _event(self, block: bytes) -> None:
        for line in block.split(b"\n"):
            if line.startswith(b"data:") and b'"permission_request"' in line:
                message = json.loads(line[5:])
                if message.get("type") == "permission_request":
                    request_id = message["data"]["request_id"]
                    marks[request_id] = {"seen": time.monotonic_ns()}
                    asyncio.get_running_loop().create_task(self.answer(self.session_id, request_id))


async def post(port: int, path: str, token: str, body: dict[str, Any]) -> int:
    data = json.dumps(body).encode()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (path.encode(), port, token.encode(), len(data), data)
        )
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paths", required=True)
    parser.add_argument("--mode", choices=["steady", "burst"], default="steady")
    parser.add_argument("--think-ms", type=float, default=1000.0)
    args = parser.parse_args()
    raise_nofile()
    paths = json.loads(Path(args.paths).read_text())[: args.sessions]  # noqa: ASYNC240
    token = parse_qs(urlsplit(paths[0]).query)["token"][0]
    loop = asyncio.get_running_loop()
    statuses: dict[int, int] = {}

    async def answer(session_id: str, request_id: str) -> None:
        marks[request_id]["post"] = time.monotonic_ns()
        status = await post(
            args.port,
            f"/agent_backend/api/sse/permission-response/{session_id}",
            token,
            {"approved": True, "reason": "bench", "request_id": request_id},
        )
        statuses[status] = statuses.get(status, 0) + 1
        marks[request_id]["answered"] = time.monotonic_ns()

    stats = Stats()
    clients = []
    for path in paths:
        session_id = urlsplit(path).path.rsplit("/", 1)[1]
        ready: asyncio.Future[int] = loop.create_future()
        request = (
            b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            % path.encode()
        )
        client = BrowserClient(stats, request, ready)
        client.answer = answer
        client.session_id = session_id
        await loop.create_connection(lambda c=client: c, "127.0.0.1", args.port)
        if await asyncio.wait_for(ready, 30) != 200:
            raise SystemExit(f"stream of {session_id} refused")
        clients.append(client)

    async def agent(session_id: str) -> tuple[float, str]:
        start = time.monotonic_ns()
        decision = await arequest_permission(session_id, "bench_tool", {"n": 1}, timeout=30)
        end = time.monotonic_ns()
        marks.setdefault(decision.request_id, {}).update(asked=start, decided=end)
        return end - start, decision.status

    times: list[int] = []
    outcomes: dict[str, int] = {}
    names = [c.session_id for c in clients]
    # One round to warm up (connections, the listener's subscriptions).
    await asyncio.wait_for(asyncio.gather(*(agent(s) for s in names)), 120)

    def record(elapsed: float, status: str) -> None:
        times.append(int(elapsed))
        outcomes[status] = outcomes.get(status, 0) + 1

    marks.clear()
    if args.mode == "burst":
        for _ in range(args.rounds):
            results = await asyncio.wait_for(asyncio.gather(*(agent(s) for s in names)), 120)
            for elapsed, status in results:
                record(elapsed, status)
    else:
        think = args.think_ms / 1000

        async def steady(session_id: str) -> None:
            await asyncio.sleep(random.uniform(0, think))
            for _ in range(args.rounds):
                record(*await agent(session_id))
                await asyncio.sleep(think * random.uniform(0.5, 1.5))

        await asyncio.wait_for(asyncio.gather(*(steady(s) for s in names)), 300)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    out: dict[str, Any] = {
        "mode": args.mode,
        "sessions": len(names),
        "count": len(times),
        "outcomes": outcomes,
        "post_statuses": statuses,
        "errors": sum(v for k, v in outcomes.items() if k != "approved"),
    }
    out.update(_percentiles(sorted(times)))
    out["segments_p50_ms"] = segments(marks.values())
    print(json.dumps(out))


def segments(rounds: Any) -> dict[str, float]:
    """Median of each leg: the ask reaching the browser, the POST, and the
    decision reaching the agent after the POST was answered."""
    legs = {
        "ask_to_browser": ("asked", "seen"),
        "post": ("post", "answered"),
        "answer_to_agent": ("answered", "decided"),
    }
    out = {}
    for name, (a, b) in legs.items():
        spans = sorted(r[b] - r[a] for r in rounds if a in r and b in r)
        out[name] = round(spans[len(spans) // 2] / 1e6, 2) if spans else None
    return out


if __name__ == "__main__":
    asyncio.run(main())
