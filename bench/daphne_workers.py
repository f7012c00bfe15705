"""Run N daphne processes on one listening socket (``ours-daphne-2w``).

daphne has no ``--workers``: this binds the port, listens with uvicorn's
backlog and starts each daphne with ``--fd`` on that socket, as a process
manager (systemd socket activation, circus) would.  The kernel hands each
new connection to whichever process accepts first.  SIGTERM is passed on;
when one worker exits, the others are stopped.

    python bench/daphne_workers.py --port 8000 --workers 2 agent_backend.asgi:application
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backlog", type=int, default=16384)
    parser.add_argument("application")
    args = parser.parse_args()

    workers: list[subprocess.Popen[bytes]] = []

    def stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    # Before any worker starts: a SIGTERM must never leave one running.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(args.backlog)
    fd = sock.fileno()
    for _ in range(args.workers):
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "daphne", "--fd", str(fd), "-v", "0", args.application],
                pass_fds=[fd],
            )
        )
    # When one worker exits, the others are stopped: a run with one of two
    # workers gone would be measured as two.
    pid, status = os.wait()
    first = os.waitstatus_to_exitcode(status)
    if first != 0:
        sys.stderr.write(f"daphne worker {pid} exited with {first}\n")
    stop()
    codes = [first] + [worker.wait() for worker in workers if worker.pid != pid]
    sys.exit(1 if any(codes) else 0)


if __name__ == "__main__":
    main()
