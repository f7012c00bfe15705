"""Benchmark our SSE server against sse-starlette, django-eventstream and the
floor (bench/peers/floor.py: the least a Python server could do).

    python bench/run.py                      # full run (machine must be quiet)
    python bench/run.py --scale small        # smoke test, ~3 minutes
    python bench/run.py --systems ours-uvicorn,sse-starlette --scenarios idle,rate

Each server runs as one process pinned to core 0 (``taskset -c 0``); the load
generator, the publisher and a private redis-server (or Redis Cluster) run on
core 1.  Results
are printed as one table and saved as JSON under the work directory (and
``bench/results/latest-<scale>.json``), with pictures from bench/plot.py.
See bench/README.md.
"""

# ruff: noqa: T201 -- a command-line tool: its output is printed
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MAIN_PY = ROOT / ".venv" / "bin" / "python"
VENV = BENCH / ".venv"
BENCH_PY = VENV / "bin" / "python"
STAMP = VENV / ".requirements-installed"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# As high as this machine lets us (a container may cap the hard limit):
# 10,000 streams need ~10,100 descriptors in the server and the generator.
NOFILE = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
SERVER_CORE = "0"
CLIENT_CORE = "1"

SCALES: dict[str, dict[str, Any]] = {
    "small": {
        "idle": [200],
        "idle_ours_extra": [400],
        "rate_conns": 200,
        "rates": [200, 500],
        "rate_secs": 5,
        "rate_idle_secs": 0,
        "rate_conns_extra": 400,
        "extra_rate": 200,
        "ladder": [200, 500, 1000],
        "storm_clients": 200,
        "storm_rate": 200,
        "perm_sessions": 10,
        "repeat": 1,
    },
    "full": {
        "idle": [1000, 5000],
        "idle_ours_extra": [10000],
        "rate_conns": 5000,
        "rates": [1000, 2000, 5000],
        "rate_secs": 20,
        "rate_idle_secs": 30,
        "rate_conns_extra": 10000,
        "extra_rate": 2000,
        "ladder": [1000, 2000, 3000, 5000, 7500, 10000, 15000],
        "storm_clients": 10000,
        "storm_rate": 1000,
        "perm_sessions": 100,
        "repeat": 3,
    },
}
SCENARIOS = ["idle", "rate", "rate10k", "max", "storm", "perm"]


@dataclass
class System:
    name: str
    python: Path
    args: list[str]
    env: dict[str, str]
    publisher: str
    paths: str  # key of the paths file
    ours: bool = False
    workers: int = 1
    redis: str = "single"  # or "cluster": the Redis its server and publisher use
    notes: list[str] = field(default_factory=list)
    scenarios: tuple[str, ...] = tuple(SCENARIOS)  # the ones it takes part in


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- environment ----------------------------------------------------------------


# A storm of 10,000 reconnects arrives at once: with Linux's defaults (4096
# and 2048) the connections beyond the listen queue wait for SYN
# retransmits (1 s, then 3 s) whatever the server does.
LISTEN_QUEUE = 16384
LISTEN_SYSCTLS = ("/proc/sys/net/core/somaxconn", "/proc/sys/net/ipv4/tcp_max_syn_backlog")


def tune_listen_queues() -> None:
    """Raise the kernel's listen-queue limits to LISTEN_QUEUE (root only)."""
    for path in LISTEN_SYSCTLS:
        try:
            if int(Path(path).read_text()) < LISTEN_QUEUE:
                Path(path).write_text(str(LISTEN_QUEUE))
                log(f"{path} = {LISTEN_QUEUE}")
        except OSError as exc:
            log(f"{path} left as it is ({exc}): a 10,000-client storm will wait for SYN retries")


def ensure_venv() -> None:
    req = BENCH / "requirements.txt"
    if STAMP.exists() and STAMP.stat().st_mtime >= req.stat().st_mtime:
        return
    log("creating bench/.venv")
    if not BENCH_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [
            str(BENCH_PY),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(req),
        ],
        check=True,
    )
    STAMP.touch()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "taskset", "-c", core, *argv]


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    for _ in range(10_000):
        if not todo:
            break
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of the process tree."""
    user = system = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return user / CLK_TCK, system / CLK_TCK


def cpu_secs(pid: int) -> float:
    return sum(cpu_times(pid))


def rss_kb(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


# -- processes ------------------------------------------------------------------


def redis_info(port: int) -> dict[str, str]:
    """``INFO`` of the Redis node on ``port`` (every section), as text fields."""
    done = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "everything"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return dict(
        line.split(":", 1) for line in done.stdout.splitlines() if ":" in line and line[0] != "#"
    )


# Cumulative counters of a node sampled around a phase, by INFO field.
NODE_COUNTERS = {
    "cpu_s": ("used_cpu_sys", "used_cpu_user"),
    "commands": ("total_commands_processed",),
    "net_in_bytes": ("total_net_input_bytes",),
    "net_out_bytes": ("total_net_output_bytes",),
}


class Broker:
    """What a system publishes through: its nodes (role, port) can be
    sampled for CPU, commands, network and memory around a phase."""

    url: str
    nodes: list[tuple[str, int]]

    def flush(self) -> None:
        for role, port in self.nodes:
            if role == "primary":
                subprocess.run(
                    ["redis-cli", "-p", str(port), "FLUSHALL"],
                    stdout=subprocess.DEVNULL,
                    check=False,
                    timeout=10,
                )

    def sample(self) -> list[dict[str, Any]]:
        out = []
        for role, port in self.nodes:
            info = redis_info(port)
            row: dict[str, Any] = {"role": role, "port": port}
            for name, keys in NODE_COUNTERS.items():
                row[name] = sum(float(info.get(k, 0)) for k in keys)
            row["used_memory"] = int(info.get("used_memory", 0))
            db0 = dict(kv.split("=") for kv in info.get("db0", "keys=0").split(","))
            row["keys"] = int(db0["keys"])
            out.append(row)
        return out


def broker_load(
    before: list[dict[str, Any]], after: list[dict[str, Any]], published: int
) -> dict[str, Any]:
    """Per node: the counters' deltas and memory after; then the primaries'
    CPU together and per published event."""
    nodes = []
    for b, a in zip(before, after, strict=True):
        node = {"role": a["role"], "port": a["port"]}
        for name in NODE_COUNTERS:
            node[name] = round(a[name] - b[name], 4)
        node["used_memory_mb"] = round(a["used_memory"] / 2**20, 2)
        node["memory_delta_bytes"] = a["used_memory"] - b["used_memory"]
        node["keys"] = a["keys"]
        nodes.append(node)
    primaries = [n for n in nodes if n["role"] == "primary"]
    cpu = sum(n["cpu_s"] for n in primaries)
    return {
        "redis_nodes": nodes,
        "redis_primary_cpu_s": round(cpu, 4),
        "redis_replica_cpu_s": round(sum(n["cpu_s"] for n in nodes if n["role"] != "primary"), 4),
        "redis_cpu_s_per_1k": round(cpu / published * 1000, 4) if published else None,
        # The busiest primary's part of the primaries' CPU (1/3 is an even spread).
        "redis_busiest_share": round(max(n["cpu_s"] for n in primaries) / cpu, 3) if cpu else None,
    }


class Redis(Broker):
    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            pinned(
                CLIENT_CORE,
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--maxclients",
                    "30000",
                    "--dir",
                    str(work),
                    "--loglevel",
                    "warning",
                ],
            ),
            stdout=subprocess.DEVNULL,
        )
        if not wait_port(self.port, 10):
            raise SystemExit("redis-server did not start")
        self.nodes = [("primary", self.port)]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Cluster(Broker):
    """Three primaries and three replicas on core 1: bench/cluster.py runs
    tests/topologies.py's ``ClusterTopology`` (its nodes inherit the core)."""

    def __init__(self, work: Path) -> None:
        log("starting a Redis Cluster: 3 primaries, 3 replicas")
        self.proc = subprocess.Popen(
            pinned(CLIENT_CORE, [str(MAIN_PY), str(BENCH / "cluster.py"), str(work / "cluster")]),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise SystemExit(f"the Redis Cluster did not start; see {work}/cluster/node-*/")
        started = json.loads(line)
        self.url = started["url"]
        self.nodes = [("primary", p) for p in started["primaries"]] + [
            ("replica", p) for p in started["replicas"]
        ]

    def stop(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # bench/cluster.py stops its nodes
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)


class Server:
    def __init__(self, system: System, work: Path) -> None:
        self.port = free_port()
        argv = [str(system.python), *[a.replace("{port}", str(self.port)) for a in system.args]]
        self.logfile = open(work / f"server-{system.name}.log", "ab")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            pinned(SERVER_CORE, argv),
            cwd=ROOT,
            env={**os.environ, **system.env},
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
        )
        if not wait_port(self.port, 30):
            self.stop()
            raise RuntimeError(f"{system.name} did not start; see {self.logfile.name}")
        time.sleep(1.0 if system.workers == 1 else 3.0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for p in reversed(tree(self.proc.pid)):
                    with contextlib.suppress(OSError):
                        os.kill(p, signal.SIGKILL)
                self.proc.wait(5)
        self.logfile.close()


class LoadGen:
    def __init__(self, port: int, paths_file: Path) -> None:
        self.proc = subprocess.Popen(
            pinned(
                CLIENT_CORE,
                [
                    str(BENCH_PY),
                    str(BENCH / "loadgen.py"),
                    "--port",
                    str(port),
                    "--paths",
                    str(paths_file),
                ],
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = self._read(30)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("load generator did not answer")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("load generator exited")
        return json.loads(line)  # type: ignore[no-any-return]

    def cmd(self, wait: float = 120, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read(wait)

    def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, RuntimeError, ValueError):
            self.cmd(wait=10, cmd="close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale = dict(SCALES[args.scale])
        if args.repeat:
            self.scale["repeat"] = args.repeat
        for item in args.set or ():
            key, _, value = item.partition("=")
            if key not in self.scale:
                raise SystemExit(f"--set: unknown parameter {key}; one of {sorted(self.scale)}")
            self.scale[key] = json.loads(value)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.work = Path(args.work or f"/tmp/sse-bench-{stamp}")
        self.work.mkdir(parents=True, exist_ok=True)
        self.redis = Redis(self.work)
        self.cluster: Cluster | None = None  # started when a system needs it
        self.seq = 0
        self.paths: dict[str, Path] = {}
        self.results: list[dict[str, Any]] = []

    # -- fixtures ---------------------------------------------------------------

    def broker(self, system: System) -> Broker:
        if system.redis == "cluster":
            assert self.cluster is not None, "run() starts the cluster"
            return self.cluster
        return self.redis

    def ours_env(self, redis: str = "single") -> dict[str, str]:
        url = self.cluster.url if redis == "cluster" and self.cluster else self.redis.url
        return {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": self.args.ours_database_url or f"sqlite:///{self.work}/bench.sqlite3",
            "REDIS_URL": url + self.args.ours_redis_query,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz",
            "JWT_ACCESS_SECONDS": str(6 * 3600),
            "PYTHONPATH": str(ROOT),
            **(
                {
                    "BENCH_PATCHES": self.args.patches,
                    "BENCH_GC_LOG": str(self.work / "gc.jsonl"),
                    "BENCH_STALL_LOG": str(self.work / "stalls.jsonl"),
                }
                if self.args.patches
                else {}
            ),
        }

    def es_env(self) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "bench.peers.eventstream_site.settings",
            "EVENTSTREAM_DB": str(self.work / "eventstream.sqlite3"),
            "REDIS_URL": self.redis.url,
            "PYTHONPATH": str(ROOT),
        }

    def fixtures(self, n: int) -> None:
        self.ours_fixtures(n)
        es = {**os.environ, **self.es_env()}
        subprocess.run(
            [str(BENCH_PY), "-m", "django", "migrate", "-v", "0"], cwd=ROOT, env=es, check=True
        )
        names = [f"s{i:05d}" for i in range(n)]
        self.paths["starlette"] = self.work / "paths-starlette.json"
        self.paths["starlette"].write_text(json.dumps([f"/events/{s}" for s in names]))
        self.paths["eventstream"] = self.work / "paths-eventstream.json"
        self.paths["eventstream"].write_text(json.dumps([f"/events/{s}/" for s in names]))

    def ours_fixtures(self, n: int) -> Path:
        """Our server's database: one user owning n sessions; their stream paths."""
        env = {**os.environ, **self.ours_env()}
        log(f"fixtures: migrate + {n} sessions")
        subprocess.run(
            [str(MAIN_PY), "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        self.paths["ours"] = self.work / "paths-ours.json"
        subprocess.run(
            [str(MAIN_PY), str(BENCH / "setup_ours.py"), str(n), str(self.paths["ours"])],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return self.paths["ours"]

    def systems(self) -> dict[str, System]:
        uv = [
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            str(LISTEN_QUEUE),
            "--timeout-graceful-shutdown",
            "3",
        ]
        # The same listen backlog as uvicorn's: Twisted's default is 50, and a
        # storm's connections beyond it wait for SYN retransmits (1 s, 3 s, ...).
        daphne = ["-e", "tcp:port={port}:interface=127.0.0.1:backlog=16384", "-v", "0"]
        ours = self.ours_env()
        return {
            "ours-uvicorn": System(
                "ours-uvicorn",
                MAIN_PY,
                ["-m", "uvicorn", "agent_backend.asgi:application", *uv],
                ours,
                "ours",
                "ours",
                ours=True,
            ),
            # The same server on a Redis Cluster: sessions spread over three
            # shards by their hash tags; rate only (for the cluster / single
            # Redis ratio and each shard's load).
            "ours-uvicorn-cluster": System(
                "ours-uvicorn-cluster",
                MAIN_PY,
                ["-m", "uvicorn", "agent_backend.asgi:application", *uv],
                self.ours_env("cluster"),
                "ours",
                "ours",
                ours=True,
                redis="cluster",
                notes=["3 primaries + 3 replicas on core 1 (bench/cluster.py)"],
                scenarios=("rate",),
            ),
            "ours-daphne": System(
                "ours-daphne",
                MAIN_PY,
                ["-m", "daphne", *daphne, "agent_backend.asgi:application"],
                ours,
                "ours",
                "ours",
                ours=True,
            ),
            "ours-uvicorn-2w": System(
                "ours-uvicorn-2w",
                MAIN_PY,
                ["-m", "uvicorn", "agent_backend.asgi:application", *uv, "--workers", "2"],
                ours,
                "ours",
                "ours",
                ours=True,
                workers=2,
                notes=["2 workers share core 0 (core 1 is the generator's)"],
            ),
            "ours-daphne-2w": System(
                "ours-daphne-2w",
                MAIN_PY,
                [
                    str(BENCH / "daphne_workers.py"),
                    "--port",
                    "{port}",
                    "--workers",
                    "2",
                    "agent_backend.asgi:application",
                ],
                ours,
                "ours",
                "ours",
                ours=True,
                workers=2,
                notes=["2 daphne processes on one socket (--fd), both on core 0"],
            ),
            "sse-starlette": System(
                "sse-starlette",
                BENCH_PY,
                ["-m", "uvicorn", "bench.peers.starlette_app:app", *uv],
                {"REDIS_URL": self.redis.url, "PYTHONPATH": str(ROOT)},
                "starlette",
                "starlette",
            ),
            "django-eventstream": System(
                "django-eventstream",
                BENCH_PY,
                ["-m", "daphne", *daphne, "bench.peers.eventstream_site.asgi:application"],
                self.es_env(),
                "eventstream",
                "eventstream",
            ),
            # No replay and no auth: not in storm (or perm/rate10k, ours only).
            "floor": System(
                "floor",
                BENCH_PY,
                [str(BENCH / "peers" / "floor.py"), "--port", "{port}"],
                {"REDIS_URL": self.redis.url},
                "ours",
                "ours",
                scenarios=("idle", "rate", "max"),
            ),
        }

    # -- helpers ----------------------------------------------------------------

    def publish(
        self,
        system: System,
        rate: float,
        secs: float,
        sessions: int,
        background: bool = False,
        prime: bool = False,
        batch: bool = False,
    ) -> Any:
        path = self.work / f"pub-{self.seq}.bin"
        redis_url = self.broker(system).url
        env = {
            **os.environ,
            **(
                self.ours_env(system.redis)
                if system.publisher == "ours"
                else self.es_env()
                if system.publisher == "eventstream"
                else {"REDIS_URL": redis_url}
            ),
        }
        python = MAIN_PY if system.publisher == "ours" else BENCH_PY
        argv = pinned(
            CLIENT_CORE,
            [
                str(python),
                str(BENCH / "publisher.py"),
                "--system",
                system.publisher,
                "--redis-url",
                redis_url,
                "--rate",
                str(rate),
                "--seconds",
                str(secs),
                "--sessions",
                str(sessions),
                "--seq-start",
                str(self.seq),
                "--log",
                str(path),
                *(["--prime"] if prime else []),
                *(["--batch"] if batch else []),
            ],
        )
        self.seq += 10_000_000
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        if background:
            return proc, path
        return self.finish_publish(proc, secs), path

    def profile(
        self, system: System, server: Server, point: str, secs: float
    ) -> subprocess.Popen[bytes] | None:
        """Start ``--profile`` against the server for a rate phase or a storm's reconnect."""
        if not self.args.profile:
            return None
        out = self.work / f"profile-{system.name}-{point}-{self.seq}"
        cmd = self.args.profile.format(pid=server.pid, secs=int(secs), out=out)
        log(f"profiling: {cmd}")
        return subprocess.Popen(cmd, shell=True, cwd=ROOT)

    @staticmethod
    def finish_publish(proc: subprocess.Popen[str], secs: float) -> dict[str, Any]:
        out, _ = proc.communicate(timeout=secs * 4 + 60)
        try:
            return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]
        except (IndexError, ValueError):
            return {"published": 0, "errors": -1, "achieved_rate": 0}

    def start(self, system: System) -> tuple[Server, LoadGen]:
        self.broker(system).flush()
        server = Server(system, self.work)
        gen = LoadGen(server.port, self.paths[system.paths])
        return server, gen

    def record(self, system: System, scenario: str, **data: Any) -> dict[str, Any]:
        row = {"system": system.name, "scenario": scenario, **data}
        self.results.append(row)
        log(f"{system.name} {scenario}: {json.dumps(data)}")
        return row

    # -- scenarios --------------------------------------------------------------

    def idle(self, system: System) -> None:
        sizes = list(self.scale["idle"]) + (self.scale["idle_ours_extra"] if system.ours else [])
        for n in sizes:
            server, gen = self.start(system)
            try:
                gen.cmd(cmd="connect", n=10, timeout=30)
                gen.cmd(cmd="drop", n=10)
                time.sleep(1.0)
                before = rss_kb(server.pid)
                conn = gen.cmd(cmd="connect", n=n, concurrency=256, timeout=120, wait=180)
                time.sleep(2.0)
                after = rss_kb(server.pid)
                self.record(
                    system,
                    "idle",
                    n=n,
                    connected=conn["connected"],
                    connect_secs=conn["secs"],
                    rss_before_mb=round(before / 1024, 1),
                    rss_after_mb=round(after / 1024, 1),
                    kb_per_conn=round((after - before) / max(1, conn["connected"]), 2),
                    errors=conn["errors"],
                )
            finally:
                gen.close()
                server.stop()

    def _rate_phase(
        self,
        system: System,
        server: Server,
        gen: LoadGen,
        n: int,
        rate: float,
        secs: float,
        batch: bool = False,
    ) -> dict[str, Any]:
        gen.cmd(cmd="reset")
        broker = self.broker(system)
        nodes0 = broker.sample()
        user0, sys0 = cpu_times(server.pid)
        profiler = self.profile(system, server, f"{n}c-{int(rate)}", secs)
        pub, path = self.publish(system, rate, secs, n, batch=batch)
        if profiler is not None:
            profiler.wait(timeout=secs + 120)
        got = gen.cmd(cmd="collect", log=str(path), drain=3.0, wait=60)
        user1, sys1 = cpu_times(server.pid)
        nodes1 = broker.sample()
        user, kernel = user1 - user0, sys1 - sys0
        cpu = user + kernel
        delivered = got["delivered"]
        ok = got["lost"] == 0 and got["p99_ms"] is not None and got["p99_ms"] < 50
        return {
            "n": n,
            "rate": rate,
            "achieved_rate": pub.get("achieved_rate"),
            "published": pub.get("published"),
            "delivered": delivered,
            "lost": got["lost"],
            "dups": got["dups"],
            "p50_ms": got["p50_ms"],
            "p99_ms": got["p99_ms"],
            "max_ms": got["max_ms"],
            "server_cpu_s": round(cpu, 3),
            "server_user_s": round(user, 3),
            "server_sys_s": round(kernel, 3),
            "cpu_s_per_1k": round(cpu / delivered * 1000, 4) if delivered else None,
            "rss_mb": round(rss_kb(server.pid) / 1024, 1),
            "ended": got["ended"],
            "open": got["open"],
            "pass_50ms": ok,
            "publisher_bound": (pub.get("achieved_rate") or 0) < rate * 0.95,
            "pub_errors": pub.get("errors"),
            **broker_load(nodes0, nodes1, pub.get("published") or 0),
        }

    def _idle_phase(self, system: System, server: Server, n: int, secs: float) -> dict[str, Any]:
        """The cost of ``n`` open streams and nothing published: heartbeats,
        lease renewals (every 10 s), the cluster's own chatter."""
        broker = self.broker(system)
        nodes0, cpu0 = broker.sample(), cpu_secs(server.pid)
        time.sleep(secs)
        cpu, nodes1 = cpu_secs(server.pid) - cpu0, broker.sample()
        load = broker_load(nodes0, nodes1, 0)
        return {
            "n": n,
            "secs": secs,
            "server_cpu_s": round(cpu, 3),
            "server_us_per_stream_s": round(cpu / (n * secs) * 1e6, 3),
            "redis_us_per_stream_s": round(load["redis_primary_cpu_s"] / (n * secs) * 1e6, 3),
            **load,
        }

    def broker_idle(self, system: System, secs: float) -> None:
        """What the system's Redis costs with no client at all (a cluster's
        nodes ping each other): the floor under ``rate_idle``."""
        broker = self.broker(system)
        broker.flush()
        before = broker.sample()
        time.sleep(secs)
        self.record(system, "broker_idle", secs=secs, **broker_load(before, broker.sample(), 0))

    def rate(
        self,
        system: System,
        n: int | None = None,
        rates: list[float] | None = None,
        scenario: str = "rate",
    ) -> None:
        n = n or self.scale["rate_conns"]
        server, gen = self.start(system)
        try:
            conn = gen.cmd(cmd="connect", n=n, concurrency=256, timeout=120, wait=180)
            time.sleep(2.0)
            held = gen.cmd(cmd="status")
            if held["open"] < n:
                self.record(
                    system,
                    scenario,
                    n=n,
                    error=f"open {held['open']}/{n} after connect",
                    connect=conn,
                    status=held,
                )
            if scenario == "rate" and self.scale["rate_idle_secs"]:
                idle = self._idle_phase(system, server, n, self.scale["rate_idle_secs"])
                self.record(system, "rate_idle", **idle)
            # Events that fall due while a publish is under way go out in one
            # pipeline (not on the cluster: one round trip per event there).
            batch = system.redis == "single"
            for r in rates or self.scale["rates"]:
                phase = self._rate_phase(system, server, gen, n, r, self.scale["rate_secs"], batch)
                self.record(system, scenario, **phase)
        finally:
            gen.close()
            server.stop()

    def rate10k(self, system: System) -> None:
        if system.ours:
            self.rate(system, self.scale["rate_conns_extra"], [self.scale["extra_rate"]], "rate10k")

    def max(self, system: System) -> None:
        n = self.scale["rate_conns"]
        server, gen = self.start(system)
        best = 0.0
        try:
            gen.cmd(cmd="connect", n=n, concurrency=256, timeout=120, wait=180)
            time.sleep(2.0)
            for r in self.scale["ladder"]:
                # Pipelined publishing: the ladder should find the server's limit.
                phase = self._rate_phase(
                    system, server, gen, n, r, self.scale["rate_secs"], batch=True
                )
                log(
                    f"{system.name} max @ {r}/s: p99={phase['p99_ms']} lost={phase['lost']} "
                    f"achieved={phase['achieved_rate']}"
                )
                if not phase["pass_50ms"]:
                    break
                if phase["publisher_bound"]:
                    # The server kept up with what the publisher managed.
                    best = max(best, phase["achieved_rate"] or 0.0)
                    break
                best = r
            busy = phase["server_cpu_s"] / self.scale["rate_secs"]
            if not phase["pass_50ms"] and busy < 0.8:
                # The server had CPU to spare: the core of the load generator,
                # the publisher and Redis ran out first.
                limited_by = f"the client core (server at {busy:.0%} of its core)"
            elif not phase["pass_50ms"]:
                limited_by = "server"
            elif phase["publisher_bound"]:
                limited_by = "publisher"
            else:
                limited_by = "nothing: the top of the ladder"
            self.record(system, "max", n=n, max_rate=best, limited_by=limited_by, last=phase)
        finally:
            gen.close()
            server.stop()

    def storm(self, system: System) -> None:
        k = self.scale["storm_clients"]
        rate = self.scale["storm_rate"]
        prime = k / rate  # one event to every session first: each client has an id
        server, gen = self.start(system)
        try:
            gen.cmd(cmd="connect", n=k, concurrency=256, timeout=120, wait=180)
            time.sleep(1.0)
            gen.cmd(cmd="reset")
            secs = prime + 5
            proc, path = self.publish(system, rate, secs, k, background=True, prime=True)
            time.sleep(prime + 1.0)
            dropped = gen.cmd(cmd="drop", n=k)
            time.sleep(1.0)
            cpu0 = cpu_secs(server.pid)
            profiler = self.profile(system, server, f"storm-{k}", 20)
            again = gen.cmd(cmd="reconnect", n=k, timeout=60, wait=90)
            if profiler is not None:
                profiler.wait(timeout=120)
            pub = self.finish_publish(proc, secs)
            report = gen.cmd(cmd="storm_report", log=str(path), drain=10.0, wait=60)
            self.record(
                system,
                "storm",
                clients=k,
                rate=rate,
                with_last_id=dropped["with_last_id"],
                reconnected=again["connected"],
                reconnect_secs=again["secs"],
                published=pub.get("published"),
                missed=report["missed"],
                missed_while_away=report["missed_while_away"],
                caught_up_secs=report["caught_up_secs"],
                dups=report["dups"],
                server_cpu_s=round(cpu_secs(server.pid) - cpu0, 3),
                errors=report["errors"],
            )
        finally:
            gen.close()
            server.stop()

    def perm(self, system: System) -> None:
        if not system.ours or system.workers != 1:
            return
        probe = subprocess.run(
            [
                str(MAIN_PY),
                "-c",
                "import django; django.setup(); from permissions import arequest_permission",
            ],
            cwd=ROOT,
            env={**os.environ, **self.ours_env()},
            capture_output=True,
        )
        if probe.returncode != 0:
            self.record(system, "perm", skipped="permissions.arequest_permission not available")
            return
        server = Server(system, self.work)
        try:
            # 100 sessions asking every 5 s, every second, and all at once.
            for mode, think_ms in (("steady", 5000), ("steady", 1000), ("burst", 0)):
                self._perm_round_trips(system, server, mode, think_ms)
        finally:
            server.stop()

    def _perm_round_trips(self, system: System, server: Server, mode: str, think_ms: int) -> None:
        n = self.scale["perm_sessions"]
        env = {**os.environ, **self.ours_env()}
        cpu0 = cpu_secs(server.pid)
        proc = subprocess.run(
            pinned(
                CLIENT_CORE,
                [
                    str(MAIN_PY),
                    str(BENCH / "perm_roundtrip.py"),
                    "--port",
                    str(server.port),
                    "--sessions",
                    str(n),
                    "--paths",
                    str(self.paths["ours"]),
                    "--mode",
                    mode,
                    "--think-ms",
                    str(think_ms),
                ],
            ),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        try:
            data = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            data = {"error": (proc.stderr or proc.stdout)[-500:]}
        database = (self.args.ours_database_url or "sqlite").split(":", 1)[0]
        answered = sum(data.get("post_statuses", {}).values())
        if answered:  # the warm-up round's too: the server's CPU counts them
            data["server_cpu_ms_per_approval"] = round(
                (cpu_secs(server.pid) - cpu0) * 1000 / answered, 2
            )
        self.record(system, "perm", database=database, think_ms=think_ms, **data)

    def run(self) -> None:
        systems = self.systems()
        names = self.args.systems.split(",") if self.args.systems else list(systems)
        if any(systems[name].redis == "cluster" for name in names):
            self.cluster = Cluster(self.work)
            systems = self.systems()  # with the cluster's URL
        scenarios = self.args.scenarios.split(",") if self.args.scenarios else SCENARIOS
        if "rate" in scenarios and self.scale["rate_idle_secs"]:
            for topology in dict.fromkeys(systems[name].redis for name in names):
                first = next(systems[name] for name in names if systems[name].redis == topology)
                self.broker_idle(first, self.scale["rate_idle_secs"] / 3)
        biggest = max(
            [
                *self.scale["idle"],
                *self.scale["idle_ours_extra"],
                self.scale["rate_conns"],
                self.scale["rate_conns_extra"],
            ]
        )
        self.fixtures(biggest)
        for rep in range(self.scale["repeat"]):
            for scenario in scenarios:
                for name in names:
                    if scenario not in systems[name].scenarios:
                        continue
                    log(f"== repeat {rep + 1}: {name} {scenario}")
                    try:
                        getattr(self, scenario)(systems[name])
                    except Exception as exc:
                        self.record(systems[name], scenario, error=repr(exc)[:300])

    def save(self) -> Path:
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "scale": self.args.scale,
            "argv": sys.argv,
            "machine": machine(),
            "params": self.scale,
        }
        out = {"meta": meta, "results": self.results}
        path = self.work / "results.json"
        path.write_text(json.dumps(out, indent=1))
        (BENCH / "results").mkdir(exist_ok=True)
        shutil.copy(path, BENCH / "results" / f"latest-{self.args.scale}.json")
        return path


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "mem_gib": round(int(mem) / 2**20, 1),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "load": os.getloadavg(),
    }


# -- the table ----------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def table(results: list[dict[str, Any]]) -> str:
    """Medians over repeats, one line per system and scenario point."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in results:
        if "error" in row or "skipped" in row:
            key = (row["scenario"], row["system"], "-")
        elif row["scenario"] == "idle":
            key = ("idle", row["system"], str(row["n"]))
        elif row["scenario"] in ("rate", "rate10k"):
            key = (row["scenario"], row["system"], f"{row['n']}c@{int(row['rate'])}/s")
        elif row["scenario"] == "rate_idle":
            key = ("rate_idle", row["system"], f"{row['n']}c {row['secs']:g}s")
        elif row["scenario"] == "broker_idle":
            key = ("rate_idle", row["system"], f"0c {row['secs']:g}s")
        elif row["scenario"] == "perm":
            mode = row.get("mode", "burst")
            think = f"@{row['think_ms'] / 1000:g}s" if mode == "steady" else ""
            key = ("perm", row["system"], mode + think)
        else:
            key = (row["scenario"], row["system"], "")
        groups.setdefault(key, []).append(row)

    lines = []
    fmt = "{:<8} {:<20} {:<13} {}"
    lines.append(fmt.format("scenario", "system", "point", "median of repeats"))
    lines.append("-" * 100)
    for (scenario, system, point), rows in sorted(groups.items()):

        def m(k: str, rows: list[dict[str, Any]] = rows) -> Any:
            return median([r.get(k) for r in rows])

        if "error" in rows[0] or "skipped" in rows[0]:
            text = rows[0].get("error") or rows[0].get("skipped")
        elif scenario == "idle":
            text = (
                f"kB/conn {m('kb_per_conn')}  rss {m('rss_before_mb')}->{m('rss_after_mb')}"
                f" MB  connected {m('connected')}  connect {m('connect_secs')} s"
            )
        elif scenario in ("rate", "rate10k"):
            text = (
                f"delivered {m('delivered')} lost {m('lost')}  p50 {m('p50_ms')} p99 "
                f"{m('p99_ms')} max {m('max_ms')} ms  cpu/1k {m('cpu_s_per_1k')} s  "
                f"pub {m('achieved_rate')}/s"
            )
            if m("redis_cpu_s_per_1k") is not None:
                text += (
                    f"  redis cpu/1k published {m('redis_cpu_s_per_1k')} s"
                    f" (busiest {m('redis_busiest_share')}; replicas {m('redis_replica_cpu_s')} s)"
                )
        elif scenario == "rate_idle" and point.startswith("0c"):
            text = (
                f"no clients: redis primaries {m('redis_primary_cpu_s')} s, "
                f"replicas {m('redis_replica_cpu_s')} s"
            )
        elif scenario == "rate_idle":
            text = (
                f"server {m('server_us_per_stream_s')} µs/stream/s  redis primaries "
                f"{m('redis_us_per_stream_s')} µs/stream/s ({m('redis_primary_cpu_s')} s; "
                f"replicas {m('redis_replica_cpu_s')} s)"
            )
        elif scenario == "max":
            text = (
                f"max rate {m('max_rate')}/s (p99<50ms, 0 lost)  limited by "
                f"{rows[0].get('limited_by')}"
            )
        elif scenario == "storm":
            text = (
                f"missed {m('missed')} (while away {m('missed_while_away')})  caught up "
                f"{m('caught_up_secs')} s  reconnect {m('reconnect_secs')} s  "
                f"dups {m('dups')}"
            )
        elif scenario == "perm":
            text = (
                f"p50 {m('p50_ms')} p99 {m('p99_ms')} ms  n {m('count')}  errors {m('errors')}  "
                f"server cpu/approval {m('server_cpu_ms_per_approval')} ms  "
                f"{rows[0].get('database', 'sqlite')}"
            )
        else:
            text = json.dumps(rows[0])
        lines.append(fmt.format(scenario, system, point, text))
    lines.extend(["", *ratios(results)])
    return "\n".join(lines)


def ratios(results: list[dict[str, Any]]) -> list[str]:
    """ours/peer for CPU per delivered event and memory per idle connection;
    ours/floor for the highest sustained rate and CPU per event."""

    def med(system: str, scenario: str, key: str, **match: Any) -> float | None:
        return median(
            [
                r.get(key)
                for r in results
                if r["system"] == system
                and r["scenario"] == scenario
                and "error" not in r
                and all(r.get(k) == v for k, v in match.items())
            ]
        )

    rates = sorted({r["rate"] for r in results if r["scenario"] == "rate" and "rate" in r})
    out = ["ratios ours-uvicorn / peer (targets: cpu <= 0.5, memory <= 0.9 of sse-starlette)"]
    for peer in ("sse-starlette", "django-eventstream"):
        for rate in rates:
            a = med("ours-uvicorn", "rate", "cpu_s_per_1k", rate=rate)
            b = med(peer, "rate", "cpu_s_per_1k", rate=rate)
            if a and b:
                out.append(f"  cpu/event @ {int(rate)}/s  vs {peer}: {a / b:.2f}")
        for n in sorted({r["n"] for r in results if r["scenario"] == "idle" and "n" in r}):
            a = med("ours-uvicorn", "idle", "kb_per_conn", n=n)
            b = med(peer, "idle", "kb_per_conn", n=n)
            if a and b:
                out.append(f"  memory/idle conn @ {n}  vs {peer}: {a / b:.2f}")
    floor = []
    a, b = med("ours-uvicorn", "max", "max_rate"), med("floor", "max", "max_rate")
    if a and b:
        limits = {
            r["system"]: r.get("limited_by")
            for r in results
            if r["scenario"] == "max" and r["system"] in ("ours-uvicorn", "floor")
        }
        floor.append(
            f"  highest sustained delivery rate (max scenario): {a / b:.2f} (goal >= 0.8;"
            f" ours limited by {limits.get('ours-uvicorn')}, the floor by {limits.get('floor')})"
        )
    for rate in rates:
        a = med("ours-uvicorn", "rate", "cpu_s_per_1k", rate=rate)
        b = med("floor", "rate", "cpu_s_per_1k", rate=rate)
        if a and b:
            floor.append(f"  cpu/event @ {int(rate)}/s: {a / b:.2f}")
    if floor:
        out += ["ratios ours-uvicorn / floor (the ceiling of a Python server here)", *floor]
    cluster = []
    for rate in rates:
        a = med("ours-uvicorn-cluster", "rate", "cpu_s_per_1k", rate=rate)
        b = med("ours-uvicorn", "rate", "cpu_s_per_1k", rate=rate)
        if a and b:
            rows = [
                r
                for r in results
                if r["system"] == "ours-uvicorn-cluster"
                and r["scenario"] == "rate"
                and r.get("rate") == rate
                and "error" not in r
            ]
            behind = sum(1 for r in rows if r.get("publisher_bound"))
            note = f" (its publisher fell behind in {behind} of {len(rows)})" if behind else ""
            cluster.append(
                f"  cluster / single Redis CPU per event @ {int(rate)}/s: {a / b:.2f}{note}"
            )
    if cluster:
        out += ["ratios ours-uvicorn-cluster / ours-uvicorn (target <= 1.2)", *cluster]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--systems", help="comma-separated; default all")
    parser.add_argument("--scenarios", help=f"comma-separated of {','.join(SCENARIOS)}")
    parser.add_argument("--repeat", type=int, help="override the scale's repeat count")
    parser.add_argument("--work", help="work directory (default /tmp/sse-bench-<time>)")
    parser.add_argument(
        "--ours-redis-query",
        default="",
        help="appended to our REDIS_URL, e.g. '?max_connections=20000'",
    )
    parser.add_argument(
        "--ours-database-url",
        help="our server's database (default: a new SQLite file in the work directory), "
        "e.g. postgres://127.0.0.1:5432/bench",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=JSON",
        help="override a scale parameter, e.g. --set 'idle=[1000]'",
    )
    parser.add_argument(
        "--patches",
        default="",
        help="instrumentation of our server (bench/patches): gcstats, stalls",
    )
    parser.add_argument(
        "--profile",
        metavar="CMD",
        help="run during each rate phase and the storm's reconnect; {pid}, {secs} and {out} "
        "are filled in, e.g. "
        "'bench/.venv/bin/py-spy record -p {pid} -d {secs} -f raw -o {out}.txt'",
    )
    parser.add_argument("--table", help="print the table of a saved results.json and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())["results"]))
        return
    if os.cpu_count() and os.cpu_count() < 2:  # type: ignore[operator]
        raise SystemExit("needs 2 cores: servers on core 0, generator + Redis on core 1")
    ensure_venv()
    tune_listen_queues()
    bench = Bench(args)
    try:
        bench.run()
    finally:
        bench.redis.stop()
        if bench.cluster is not None:
            bench.cluster.stop()
        path = bench.save()
    print(table(bench.results))
    print(f"\nresults: {path}")
    plot(path, args.scale == "full")


def plot(results: Path, latest: bool) -> None:
    """The pictures of a run (bench/plot.py, in bench/.venv: matplotlib)
    next to its results.json; for a full run also as bench/results/latest-*.png."""
    done = subprocess.run(
        [str(BENCH_PY), str(BENCH / "plot.py"), str(results), str(results.parent)], check=False
    )
    if done.returncode != 0:
        log("plot.py failed; the results are saved")
        return
    for name in ("cpu", "p99"):
        png = results.parent / f"{name}.png"
        if latest and png.exists():
            shutil.copy(png, BENCH / "results" / f"latest-{name}.png")


if __name__ == "__main__":
    main()
