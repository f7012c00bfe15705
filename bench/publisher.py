"""Publishes events at a fixed rate to random sessions, the way each system's
users publish, and logs ``(seq, session index, monotonic ns)`` per event.

  ours        ``sse.notifier.send`` (one Lua EVALSHA: XADD + EXPIRE + PUBLISH)
  starlette   ``redis.publish("sse_events:<sid>", json)`` (plain pub/sub)
  eventstream ``django_eventstream.send_event`` (EVENTSTREAM_REDIS + storage)

``t`` is stamped just before the publish call, so a publisher that falls
behind does not inflate latencies; it reports the rate it achieved.

``--batch`` (the ``max`` scenario): when more than one event is due, they go
to Redis in one pipeline (at most ``MAX_BATCH``), so the publisher can reach
rates its one round trip per event cannot.  The server sees the same
messages; django-eventstream's ``send_event`` has no batch form.
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
from typing import Any, BinaryIO

Publish = Callable[[str, dict[str, Any]], object]
PublishMany = Callable[[list[tuple[str, dict[str, Any]]]], object]
MAX_BATCH = 100


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


def batch_publisher(system: str, redis_url: str) -> PublishMany:
    if system == "ours":
        import django

        django.setup()
        from sse._stream.events import prepare
        from sse._stream.hub import get_hub
        from sse._transport.redis import _args

        # What notifier.send does per event, pipelined (the broker's internals).
        broker: Any = get_hub().broker
        script = broker._clients()[0]

        def send_ours(items: list[tuple[str, dict[str, Any]]]) -> object:
            with script.registered_client.pipeline(transaction=False) as pipe:
                for sid, data in items:
                    body = prepare(sid, "tool_status", data)
                    script(keys=broker._keys(sid), args=_args(body), client=pipe)
                return pipe.execute()

        return send_ours
    if system == "starlette":
        import redis

        client = redis.Redis.from_url(redis_url)

        def send_plain(items: list[tuple[str, dict[str, Any]]]) -> object:
            with client.pipeline(transaction=False) as pipe:
                for sid, data in items:
                    pipe.publish("sse_events:" + sid, json.dumps(data))
                return pipe.execute()

        return send_plain
    send = publisher(system, redis_url)

    def send_each(items: list[tuple[str, dict[str, Any]]]) -> object:
        return [send(sid, data) for sid, data in items]

    return send_each


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
    parser.add_argument("--batch", action="store_true", help="pipeline events that are due")
    args = parser.parse_args()
    send = publisher(args.system, args.redis_url)
    send_many = batch_publisher(args.system, args.redis_url) if args.batch else None
    rng = random.Random(args.seed)
    total = int(args.rate * args.seconds)
    names = [f"s{i:05d}" for i in range(args.sessions)]
    log = array.array("q")
    errors = 0
    send(names[0], {"warmup": 1})  # connect and load the script before timing
    interval_ns = int(1e9 / args.rate)
    start = time.monotonic_ns()
    # The log is written as it grows (bench/soak.py reads it while it runs).
    out = open(args.log, "wb")  # noqa: SIM115 -- closed below
    written = 0
    next_write = start + 1_000_000_000
    hard_stop = start + int(args.seconds * 3e9) + 5_000_000_000
    i = 0
    while i < total:
        due = start + i * interval_ns
        now = time.monotonic_ns()
        if now > hard_stop:
            break
        if due - now > 1_000_000:  # sleep only when more than 1 ms ahead
            time.sleep((due - now) / 1e9)
        # Events due by now: one, or with --batch all of them (up to MAX_BATCH).
        count = 1
        if send_many is not None:
            behind = (time.monotonic_ns() - start) // interval_ns + 1 - i
            count = max(1, min(behind, MAX_BATCH, total - i))
        t = time.monotonic_ns()
        batch = []
        for seq in range(args.seq_start + i, args.seq_start + i + count):
            n = seq - args.seq_start
            sid = n if args.prime and n < args.sessions else rng.randrange(args.sessions)
            data = {"q": seq, "t": t, "tool_name": "search", "status": "running"}
            batch.append((seq, sid, data))
        i += count
        try:
            if send_many is None:
                send(names[batch[0][1]], batch[0][2])
            else:
                send_many([(names[sid], data) for _, sid, data in batch])
        except Exception as exc:
            errors += count
            if errors <= count + 2:
                print(f"publish failed: {exc!r}", file=sys.stderr)
            continue
        for seq, sid, _ in batch:
            log.extend((seq, sid, t))
        if t >= next_write:
            written = _append(out, log, written)
            next_write = t + 1_000_000_000
    elapsed = (time.monotonic_ns() - start) / 1e9
    _append(out, log, written)
    out.close()
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


def _append(out: BinaryIO, log: array.array[int], written: int) -> int:
    """Write the records logged since ``written``; returns how many are written."""
    out.write(log[written:].tobytes())
    out.flush()
    return len(log)


if __name__ == "__main__":
    main()
