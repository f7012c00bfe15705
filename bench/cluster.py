"""The bench's Redis Cluster (``ours-uvicorn-cluster``): the suite's three
primaries and three replicas (``tests/topologies.py``), so the bench runs
the topology the production tests check.  It runs under the product's
Python, which has what ``tests/`` imports; ``bench/.venv`` has not.

    .venv/bin/python bench/cluster.py /tmp/sse-bench-.../cluster

Prints one JSON line (the URL, the primaries' and replicas' ports) once
every node says the cluster is ok, and stops the nodes when its stdin
closes or it is terminated.
"""

# ruff: noqa: T201 -- run.py reads what it prints
from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.topologies import ClusterTopology


def _terminated(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)


def main() -> None:
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    signal.signal(signal.SIGTERM, _terminated)
    cluster = ClusterTopology(binary, directory)
    try:
        cluster.start()
        primaries = cluster.primaries()
        print(
            json.dumps(
                {
                    "url": cluster.url,
                    "primaries": [node.port for node in primaries],
                    "replicas": [node.port for node in cluster.nodes if node not in primaries],
                }
            ),
            flush=True,
        )
        sys.stdin.read()  # until run.py closes it, or exits
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
