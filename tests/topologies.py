"""Real Redis topologies for the production tests, on free ports: a Redis
Cluster of three primaries and three replicas, and one primary with one
replica watched by three sentinels.  Either speaks plain TCP or only TLS
(with a CA made for it).  Fault tests SIGKILL their primaries."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from tests.servers import ManagedProcess, RedisServer, _make_certificates, free_port

MASTER_NAME = "mymaster"
# Small, so a killed primary is replaced within a few seconds.
NODE_TIMEOUT_MS = 1000
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class TLSFiles:
    """A CA and a certificate for 127.0.0.1 it signed, shared by every process of a topology."""

    def __init__(self, directory: Path) -> None:
        self.ca = directory / "ca.crt"
        self.cert = directory / "server.crt"
        self.key = directory / "server.key"
        _make_certificates(directory, self.ca, self.cert, self.key)

    def server_args(self) -> list[str]:
        return [
            "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
            "--tls-replication", "yes",
        ]  # fmt: skip

    def client_options(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca)}

    def query(self) -> str:
        return f"?ssl_ca_certs={quote(str(self.ca), safe='')}&ssl_cert_reqs=required"


class Node(RedisServer):
    """A redis-server of a topology; ``extra`` are its own arguments."""

    def __init__(
        self, binary: str, directory: Path, extra: list[str], tls: TLSFiles | None
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.tls = tls
        super().__init__(binary, directory)
        self.argv += extra

    def _listen_args(self, port: int) -> list[str]:
        if self.tls is None:
            return ["--port", str(port)]
        return ["--port", "0", "--tls-port", str(port), *self.tls.server_args()]

    def _client_options(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", **(self.tls.client_options() if self.tls else {})}

    def client(self) -> redis.Redis:  # type: ignore[override]
        return redis.Redis(port=self.port, socket_timeout=2, **self._client_options())

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as client:
            return client.info(section)  # type: ignore[no-any-return]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout} s")
        time.sleep(0.05)


class ClusterTopology:
    """Three primaries and three replicas (``redis-cli --cluster create``)."""

    def __init__(self, binary: str, directory: Path, tls: bool = False) -> None:
        self.directory = directory
        self.tls = TLSFiles(directory) if tls else None
        self.nodes: list[Node] = []
        for n in range(6):
            path = directory / f"node-{n}"
            self.nodes.append(
                Node(
                    binary,
                    path,
                    [
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(path / "nodes.conf"),
                        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                        # Not port + 10000, which may be taken or past 65535.
                        "--cluster-port", str(free_port()),
                        *(["--tls-cluster", "yes"] if tls else []),
                    ],
                    self.tls,
                )
            )  # fmt: skip
        scheme = "rediss+cluster" if tls else "redis+cluster"
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:2])
        self.url = f"{scheme}://{seeds}" + (self.tls.query() if self.tls else "")

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        assert cli is not None, "redis-cli is not installed (apt-get install redis-tools)"
        tls_args = ["--tls", "--cacert", str(self.tls.ca)] if self.tls else []
        result = subprocess.run(
            [
                cli, *tls_args, "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout}")
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every running node says cluster_state:ok and maps all slots to
        running primaries, each with a replica (when ``replicas``)."""
        self._wait_slots(timeout, replicas=True)

    def _wait_slots(self, timeout: float, replicas: bool) -> None:
        def healthy() -> bool:
            running = [node for node in self.nodes if node.running]
            ports = {node.port for node in running}
            for node in running:
                if self.cluster_info(node)["cluster_state"] != "ok":
                    return False
                with node.client() as client:
                    ranges = client.execute_command("CLUSTER", "SLOTS")
                if sum(int(r[1]) - int(r[0]) + 1 for r in ranges) != 16384:
                    return False
                if any(int(r[2][1]) not in ports or (replicas and len(r) < 4) for r in ranges):
                    return False
            return True

        _wait(healthy, timeout, "the cluster was not ok")

    def cluster_info(self, node: Node) -> dict[str, str]:
        with node.client() as client:
            text = client.execute_command("CLUSTER", "INFO")
        text = text.decode() if isinstance(text, bytes) else str(text)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def role(self, node: Node) -> str:
        with node.client() as client:
            return str(client.execute_command("ROLE")[0].decode())

    def primaries(self) -> list[Node]:
        return [node for node in self.nodes if node.running and self.role(node) == "master"]

    def owner(self, key: str) -> Node:
        """The primary that serves ``key``'s slot now."""
        for node in self.nodes:
            if not node.running:
                continue
            with node.client() as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RuntimeError("no node answers")

    def replica_of(self, primary: Node) -> Node:
        for node in self.nodes:
            if node is primary or not node.running:
                continue
            info = node.info("replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary.port:
                return node
        raise RuntimeError(f"no replica of {primary.port}")

    def wait_promoted(self, replica: Node, timeout: float = 30.0) -> None:
        """``replica`` took over its killed primary's slots and the cluster is ok again."""
        _wait(lambda: self.role(replica) == "master", timeout, "the replica was not promoted")
        self._wait_slots(timeout, replicas=False)

    def heal(self) -> None:
        """Restart killed nodes (each rejoins as a replica of the node that
        took over) and wait until every primary has a replica again."""
        for node in self.nodes:
            if not node.running:
                node.start()
        self.wait_healthy()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class Sentinel(ManagedProcess):
    """``redis-server <config> --sentinel`` watching ``MASTER_NAME``."""

    def __init__(
        self, binary: str, directory: Path, master_port: int, tls: TLSFiles | None
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.tls = tls
        listen = (
            [f"port {port}"]
            if tls is None
            else [
                "port 0",
                f"tls-port {port}",
                f"tls-cert-file {tls.cert}",
                f"tls-key-file {tls.key}",
                f"tls-ca-cert-file {tls.ca}",
                "tls-auth-clients no",
                "tls-replication yes",
            ]
        )
        config = directory / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    *listen,
                    "bind 127.0.0.1",
                    f"dir {directory}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                    "",
                ]
            )
        )
        super().__init__([binary, str(config), "--sentinel"], {}, port, directory / "sentinel.log")

    def client(self) -> redis.Redis:
        options = self.tls.client_options() if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **options)

    def ready(self) -> bool:
        with self.client() as client:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

    def master_port(self) -> int:
        with self.client() as client:
            return int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1])


class SentinelTopology:
    """One primary, one replica, three sentinels (quorum 2)."""

    def __init__(self, binary: str, directory: Path, tls: bool = False) -> None:
        self.tls = TLSFiles(directory) if tls else None
        self.binary = binary
        self.primary = Node(binary, directory / "primary", [], self.tls)
        self.replica = Node(
            binary,
            directory / "replica",
            ["--replicaof", "127.0.0.1", str(self.primary.port)],
            self.tls,
        )
        self.sentinels = [
            Sentinel(binary, directory / f"sentinel-{n}", self.primary.port, self.tls)
            for n in range(3)
        ]
        scheme = "rediss+sentinel" if tls else "redis+sentinel"
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        self.url = f"{scheme}://{hosts}/{MASTER_NAME}/0" + (self.tls.query() if self.tls else "")

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, self.replica]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        _wait(
            lambda: self.replica.info("replication")["master_link_status"] == "up",
            30,
            "the replica did not sync",
        )
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_agreed(self.primary)

    def wait_agreed(self, primary: Node | None = None, timeout: float = 30.0) -> None:
        """Every sentinel names ``primary`` (None: the same node, whichever
        it is), knows the other two, and sees the other node as its
        replica, linked and up."""

        def agreed() -> bool:
            named = primary
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    state = client.sentinel_master(MASTER_NAME)
                    replicas = client.sentinel_slaves(MASTER_NAME)
                port = int(state["port"])
                if named is None:  # the first sentinel's, for the others to match
                    named = next((node for node in self.nodes if node.port == port), None)
                if named is None or port != named.port or state["num-other-sentinels"] != 2:
                    return False
                if not state["is_master"] or state["is_sdown"] or state["is_odown"]:
                    return False
                replica = next(node for node in self.nodes if node is not named)
                if not any(
                    int(r["port"]) == replica.port
                    and not r["is_sdown"]
                    and r["master-link-status"] == "ok"
                    for r in replicas
                ):
                    return False
            return True

        _wait(agreed, timeout, "the sentinels did not agree on the primary")

    def heal(self) -> None:
        """Restart a killed node as a replica of the current primary, and
        wait until the sentinels see both again, whichever node is the
        primary by then: on a busy machine the sentinels may take a slow new
        primary for a dead one and fail over once more meanwhile."""
        primary = self.current_primary()
        for node in self.nodes:
            if not node.running:
                if "--replicaof" in node.argv:
                    at = node.argv.index("--replicaof")
                    del node.argv[at : at + 3]
                node.argv += ["--replicaof", "127.0.0.1", str(primary.port)]
                node.start()
        self.wait_agreed()

    def current_primary(self) -> Node:
        port = self.sentinels[0].master_port()
        return next(node for node in self.nodes if node.port == port)

    def wait_failover(self, killed: Node, timeout: float = 30.0) -> Node:
        """The node every sentinel names once ``killed`` was replaced."""
        other = next(node for node in self.nodes if node is not killed)
        _wait(
            lambda: (
                all(s.master_port() == other.port for s in self.sentinels)
                and other.info("replication")["role"] == "master"
            ),
            timeout,
            "the sentinels did not fail over",
        )
        return other

    def close(self) -> None:
        for sentinel in self.sentinels:
            if sentinel.proc is not None:
                sentinel.kill()
        for node in self.nodes:
            node.close()
