"""Publishes events at a fixed rate to random sessions, the way each system's
users publish, and logs ``(seq, session index, monotonic ns)`` per event.

  ours        ``sse.notifier.send`` (one Lua EVALSHA: XADD + EXPIRE + PUBLISH)
  starlette   ``redis.publish("sse_events:<sid>", json)`` (plain pub/sub)
  eventstream ``django_eventstream.send_event`` (EVENTSTREAM_REDIS + storage)

``t`` is stamped just before the publish call, so a publisher that falls
behind does not inflate latencies; it reports the rate it achieved.
"""

# ruff: noqa: T201 -- a command-line tool: its output is printed
from __future__ import annotations

import argparse
import array
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

Publish = Callable[[str, dict[str, Any]], object]


def publisher(system: str, redis_url: str) -> Publish:
    if system == "ours":
        import django

        django.setup()
        from sse import notifier

        def send(sid: str, data: dict[str, Any]) -> object:
            return notifier.send(sid, "tool_status", data)

        return send
    if system == "eventstream":
        import django

        django.setup()
        from django_eventstream import send_event

        def send_es(sid: str, data: dict[str, Any]) -> object:
            return send_event(sid, "message", data)

        return send_es
    if system == "starlette":
        import redis

        client = redis.Redis.from_url(redis_url)

        def send_plain(sid: str, data: dict[str, Any]) -> object:
            return client.publish("sse_events:" + sid, json.dumps(data))

        return send_plain
    raise SystemExit(f"unknown system {system}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", required=True)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--sessions", type=int, required=True, help="publish to s0..s{n-1}")
    parser.add_argument("--seq-start", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--prime",
        action="store_true",
        help="first one event to every session in order, then random",
    )
    args = parser.parse_args()
    send = publisher(args.system, args.redis_url)
    rng = random.Random(args.seed)
    total = int(args.rate * args.seconds)
    names = [f"s{i:05d}" for i in range(args.sessions)]
    log = array.array("q")
    errors = 0
    send(names[0], {"warmup": 1})  # connect and load the script before timing
    interval_ns = int(1e9 / args.rate)
    start = time.monotonic_ns()
    hard_stop = start + int(args.seconds * 3e9) + 5_000_000_000
    for i in range(total):
        due = start + i * interval_ns
        now = time.monotonic_ns()
        if now > hard_stop:
            break
        if due - now > 1_000_000:  # sleep only when more than 1 ms ahead
            time.sleep((due - now) / 1e9)
        sid = i if args.prime and i < args.sessions else rng.randrange(args.sessions)
        seq = args.seq_start + i
        t = time.monotonic_ns()
        try:
            send(names[sid], {"q": seq, "t": t, "tool_name": "search", "status": "running"})
        except Exception as exc:
            errors += 1
            if errors < 3:
                print(f"publish failed: {exc!r}", file=sys.stderr)
            continue
        log.extend((seq, sid, t))
    elapsed = (time.monotonic_ns() - start) / 1e9
    with open(args.log, "wb") as f:
        f.write(log.tobytes())
    published = len(log) // 3
    print(
        json.dumps(
            {
                "published": published,
                "errors": errors,
                "target_rate": args.rate,
                "achieved_rate": round(published / elapsed, 1) if elapsed else None,
                "secs": round(elapsed, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
