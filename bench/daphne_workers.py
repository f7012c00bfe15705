"""Run N daphne processes on one listening socket (``ours-daphne-2w``).

daphne has no ``--workers``: this binds the port, listens with uvicorn's
backlog and starts each daphne with ``--fd`` on that socket, as a process
manager (systemd socket activation, circus) would.  The kernel hands each
new connection to whichever process accepts first.  SIGTERM is passed on.

    python bench/daphne_workers.py --port 8000 --workers 2 agent_backend.asgi:application
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backlog", type=int, default=8192)
    parser.add_argument("application")
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(args.backlog)
    fd = sock.fileno()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "--fd", str(fd), "-v", "0", args.application],
            pass_fds=[fd],
        )
        for _ in range(args.workers)
    ]

    def stop(signum: int, frame: object) -> None:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [worker.wait() for worker in workers]
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
