"""Redis CPU per published event against how many processes subscribe to
its channel, for sizing a cluster: pub/sub fans out per subscribed
process, not per stream.  The suite's cluster (three primaries, three
replicas, ``tests/topologies.py``), our publishing script as a cluster
runs it (``PUBLISH_FENCED`` with ``SPUBLISH``), events at a fixed rate to
random sessions, and k subscriber connections per primary, each holding
every session of its primary (k processes that each serve every session).

    taskset -c 1 .venv/bin/python bench/fanout.py --rate 1000 --seconds 10

Prints one JSON line per k: the primaries' and the replicas' CPU per
event (µs), the cluster's idle CPU over the same time already taken off,
and Redis's own time for the script per call (``INFO commandstats``).
"""

# ruff: noqa: T201 -- a command-line tool: its output is printed
from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import redis.cluster

from sse._transport.base import LAST_ID_TTL
from sse._transport.keys import buffer_key, channel, last_key, writer_key
from sse._transport.redis import publish_script
from sse._transport.resp import command
from tests.topologies import ClusterTopology, Node

BUFFER_SIZE, BUFFER_TTL = 100, 600  # sse.conf's defaults
BODY = b'{"q": 1, "t": 1, "tool_name": "search", "status": "running"}'


def node_cpu(nodes: list[Node]) -> list[float]:
    out = []
    for node in nodes:
        info = node.info("cpu")
        out.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return out


class Subscriber:
    """One connection to a primary, subscribed to its sessions' channels,
    reading (and dropping) whatever arrives."""

    def __init__(self, port: int, channels: list[bytes]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"".join(command(b"SSUBSCRIBE", c) for c in channels))
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while self.sock.recv(1 << 16):
                pass

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join()
        self.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--subscribers", default="0,1,2,4", help="values of k")
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not on PATH"
    with tempfile.TemporaryDirectory() as tmp:
        cluster = ClusterTopology(binary, Path(tmp))
        try:
            cluster.start()
            run(cluster, args)
        finally:
            cluster.close()


def run(cluster: ClusterTopology, args: argparse.Namespace) -> None:
    primaries = cluster.primaries()
    # Primaries first: the first len(primaries) figures are theirs.
    nodes = primaries + [node for node in cluster.nodes if node not in primaries]
    client = redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode("127.0.0.1", primaries[0].port)]  # type: ignore[no-untyped-call]
    )
    script = client.register_script(publish_script("cluster"))
    sessions = [f"s{i:05d}" for i in range(args.sessions)]
    by_port: dict[int, list[bytes]] = {node.port: [] for node in primaries}
    for sid in sessions:
        by_port[cluster.owner(buffer_key(sid, True)).port].append(channel(sid, True))
    rng = random.Random(1)
    for k in (int(v) for v in args.subscribers.split(",")):
        subscribers = [Subscriber(port, chans) for port, chans in by_port.items() for _ in range(k)]
        for node in primaries:
            with node.client() as c:
                c.config_resetstat()
        time.sleep(1.0)
        idle0 = node_cpu(nodes)
        time.sleep(args.seconds)
        idle1 = node_cpu(nodes)
        total = int(args.rate * args.seconds)
        interval = 1 / args.rate
        start = time.monotonic()
        for i in range(total):
            ahead = start + i * interval - time.monotonic()
            if ahead > 0.001:
                time.sleep(ahead)
            sid = sessions[rng.randrange(len(sessions))]
            keys = [buffer_key(sid, True), channel(sid, True), last_key(sid, True)]
            script(
                keys=[*keys, writer_key(sid, True)],
                args=[BUFFER_SIZE + 1, BUFFER_TTL, BODY, LAST_ID_TTL],
            )
        elapsed = time.monotonic() - start
        time.sleep(0.5)
        busy1 = node_cpu(nodes)
        # busy1 - idle1 spans the publishing (and 0.5 s): take off the idle rate.
        idle_rate = [(b - a) / args.seconds for a, b in zip(idle0, idle1, strict=True)]
        spent = [
            b - a - r * (elapsed + 0.5) for a, b, r in zip(idle1, busy1, idle_rate, strict=True)
        ]
        n = len(primaries)
        # Redis's own timing of the script (not the I/O around it), mean of the primaries.
        script_us = [
            float(node.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
            for node in primaries
        ]
        print(
            json.dumps(
                {
                    "subscribers_per_primary": k,
                    "events": total,
                    "achieved_rate": round(total / elapsed, 1),
                    "primaries_us_per_event": round(sum(spent[:n]) / total * 1e6, 2),
                    "replicas_us_per_event": round(sum(spent[n:]) / total * 1e6, 2),
                    "script_us_per_call": round(sum(script_us) / n, 2),
                    "idle_cpu_per_s": round(sum(idle_rate), 4),
                    "slots_spread": [len(c) for c in by_port.values()],
                }
            ),
            flush=True,
        )
        for sub in subscribers:
            sub.close()
    client.close()


if __name__ == "__main__":
    main()
