"""A host of its own for a redis-server: a network namespace the test makes,
reached from this one by two veth links, one of which can be cut.

Cutting takes the namespace's end of the link down: this side keeps its
route and sends into a dead link, so packets vanish without a reset, as
across a real partition.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import redis

from tests.servers import ManagedProcess, free_port


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's ip"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Link:
    """A veth pair: ``host`` here, ``peer`` in the namespace at ``address``."""

    def __init__(self, namespace: str, tag: str, subnet: int, index: int) -> None:
        self.namespace = namespace
        self.host, self.peer = f"{tag}h{index}", f"{tag}n{index}"
        base = f"10.{200 + index}.{subnet}"
        self.address = f"{base}.2"
        _ip("link", "add", self.host, "type", "veth", "peer", "name", self.peer)
        _ip("link", "set", self.peer, "netns", namespace)
        _ip("addr", "add", f"{base}.1/30", "dev", self.host)
        _ip("-n", namespace, "addr", "add", f"{self.address}/30", "dev", self.peer)
        _ip("link", "set", self.host, "up")
        self.restore()

    def cut(self) -> None:
        _ip("-n", self.namespace, "link", "set", self.peer, "down")

    def restore(self) -> None:
        _ip("-n", self.namespace, "link", "set", self.peer, "up")


class IsolatedRedis:
    """A redis-server alone in a namespace, on ``links`` addresses."""

    def __init__(self, log_dir: Path) -> None:
        tag = "sse" + secrets.token_hex(2)
        self.namespace = f"{tag}-redis"
        subnet = secrets.randbelow(250) + 1
        _ip("netns", "add", self.namespace)
        try:
            self.links = [Link(self.namespace, tag, subnet, index) for index in (0, 1)]
            self.port = free_port()
            self.process = _Redis(
                ["ip", "netns", "exec", self.namespace, "redis-server",
                 "--port", str(self.port), "--bind", "0.0.0.0", "--protected-mode", "no",
                 "--save", "", "--appendonly", "no"],
                {"PATH": os.environ["PATH"]},
                self.port,
                log_dir / f"redis-{self.namespace}.log",
            )  # fmt: skip
            self.process.address = self.links[1].address
            self.process.start()
        except BaseException:
            self.close()
            raise

    def url(self, link: int, query: str = "") -> str:
        return f"redis://{self.links[link].address}:{self.port}/0" + (f"?{query}" if query else "")

    def close(self) -> None:
        if getattr(self, "process", None) is not None and self.process.proc is not None:
            self.process.kill()
        # Deleting the namespace deletes its ends of the links, and so the pairs.
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=10)


class _Redis(ManagedProcess):
    address = ""

    def ready(self) -> bool:
        with redis.Redis(self.address, self.port, socket_timeout=1) as client:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False
