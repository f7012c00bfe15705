"""Soak: our server holding 2,000 streams for 30 minutes under churn and
publishing, to show that what it holds stays flat (``make soak``).

    python bench/soak.py                      # 30 minutes, 2,000 streams
    python bench/soak.py --minutes 2 --streams 500 --interval 10   # a try-out

The bench's pieces (bench/run.py): a private redis-server, our server under
uvicorn (``bench.settings``, Redis broker) pinned to core 0, the load
generator and the publisher on core 1.  The server runs the project behind
``bench/soak_asgi.py``, a probe that answers from inside the serving loop.

Every second the generator closes ``--churn`` streams (1 % of them; half
with a FIN, half with a reset) and opens each again with its Last-Event-ID;
the publisher sends ``--rate`` events a second to random sessions (first one
to every session, so every stream has an id to come back with).  Every
``--interval`` seconds: the server's VmRSS and open descriptors (``/proc``),
its loop's task count and the collector's objects (the probe), events older
than 5 s that no client has seen.  At the end every event published must have
arrived once, and the mean of the first window after the warm-up is compared
with the mean of the last (``judge``; bench/RESULTS.md states the rule).
Writes bench/results/soak-latest.json; exits 1 if something grew or an event
was lost.
"""

# ruff: noqa: T201 -- a command-line tool: its output is printed
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (
    BENCH,
    ROOT,
    Bench,
    LoadGen,
    Server,
    System,
    cpu_secs,
    ensure_venv,
    log,
    machine,
    rss_kb,
)

RSS_GROWTH = 0.05  # the last window's mean RSS over the first's, at most
COUNT_DRIFT = 0.02  # descriptors and tasks: this share, plus the churn's streams
OLDER_THAN = 5.0  # seconds: an event not seen by then counts as missing


def soak_system(bench: Bench, tracemalloc: int) -> System:
    """ours-uvicorn, with the probe in front of the project."""
    ours = bench.systems()["ours-uvicorn"]
    args = ["bench.soak_asgi:application" if a.endswith(":application") else a for a in ours.args]
    env = {**ours.env, **({"SOAK_TRACEMALLOC": str(tracemalloc)} if tracemalloc else {})}
    return dataclasses.replace(ours, name="ours-soak", args=args, env=env)


class Soak:
    def __init__(self, bench: Bench, args: argparse.Namespace) -> None:
        self.bench = bench
        self.args = args
        self.secs = args.minutes * 60.0
        self.prime_secs = args.streams / args.rate
        self.warmup = (
            args.warmup if args.warmup is not None else max(self.prime_secs + 10, self.secs / 15)
        )
        self.window = args.window if args.window is not None else min(300.0, self.secs / 4)
        if self.warmup + 2 * self.window > self.secs:
            raise SystemExit("--minutes is too short for the warm-up and two windows")
        self.samples: list[dict[str, Any]] = []
        self.top = args.tracemalloc and 25

    def run(self) -> dict[str, Any]:
        args, bench = self.args, self.bench
        paths = bench.ours_fixtures(args.streams)
        system = soak_system(bench, args.tracemalloc)
        bench.redis.flush()
        server = Server(system, bench.work)
        gen = LoadGen(server.port, paths)
        log(f"server: pid {server.pid}, http://127.0.0.1:{server.port}/_soak/figures")
        try:
            conn = gen.cmd(cmd="connect", n=args.streams, concurrency=256, timeout=120, wait=180)
            log(f"connected {conn['connected']}/{args.streams} in {conn['secs']} s")
            pub, pub_log = bench.publish(
                system, args.rate, self.secs, args.streams, background=True, prime=True
            )
            self.loop(server, gen, pub_log)
            churn = gen.cmd(cmd="churn_stop", timeout=30, wait=60)
            published = bench.finish_publish(pub, self.secs)
            final = gen.cmd(cmd="collect", log=str(pub_log), drain=10.0, wait=120)
            log(f"final: {json.dumps(final)}")
            held = self.held_garbage(server)
        finally:
            gen.close()
            server.stop()
        return {
            "connect": conn,
            "publisher": published,
            "churn": churn,
            "final": final,
            "held_garbage": held,
            "verdict": judge(
                self.samples, self.warmup, self.window, self.secs, args.churn, final["lost"]
            ),
        }

    def loop(self, server: Server, gen: LoadGen, pub_log: Path) -> None:
        start = time.monotonic()
        churning = False
        cpu0, at0, wait0 = cpu_secs(server.pid), start, runq_wait(server.pid)
        for k in range(int(self.secs // self.args.interval) + 1):
            due = start + k * self.args.interval
            while True:
                now = time.monotonic()
                if not churning and now - start >= self.prime_secs + 2:
                    gen.cmd(cmd="churn", per_tick=self.args.churn, every=1.0, timeout=10)
                    churning = True
                    log(f"churn: {self.args.churn} streams a second")
                if now >= due:
                    break
                time.sleep(min(due - now, 1.0))
            row = self.sample(server, gen, pub_log, now - start)
            cpu, at, wait = row.pop("cpu_s"), time.monotonic(), runq_wait(server.pid)
            row["cpu_pct"] = round((cpu - cpu0) / (at - at0) * 100, 1) if k else None
            # Time the loop's thread was ready to run but waited for the CPU.
            row["runq_ms"] = round((wait - wait0) / 1e6) if k else None
            cpu0, at0, wait0 = cpu, at, wait
            self.samples.append(row)
            log(" ".join(f"{key}={row[key]}" for key in COLUMNS if key in row))

    def held_garbage(self, server: Server) -> dict[str, Any]:
        """What the collector had not reclaimed at the end (the frozen
        generation given back, one full collection), and the RSS after it."""
        before = rss_kb(server.pid)
        try:
            found = ask(server, "garbage=25", timeout=120)
        except OSError as exc:
            return {"error": repr(exc)}
        out = {
            "objects": found["garbage"],
            "kinds": found["garbage_kinds"],
            "rss_before_mb": round(before / 1024, 2),
            "rss_after_mb": round(rss_kb(server.pid) / 1024, 2),
        }
        log(
            f"held garbage: {found['garbage']} objects; RSS {out['rss_before_mb']} -> "
            f"{out['rss_after_mb']} MB"
        )
        return out

    def sample(self, server: Server, gen: LoadGen, pub_log: Path, t: float) -> dict[str, Any]:
        pid = server.pid
        row: dict[str, Any] = {
            "t": round(t, 1),
            "rss_mb": round(rss_kb(pid) / 1024, 2),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "cpu_s": cpu_secs(pid),
        }
        started = time.monotonic()
        # A tracemalloc snapshot of the whole heap takes a while.
        probe = ask(server, f"top={self.top or 0}", timeout=300 if self.top else 30)
        row["probe_ms"] = round((time.monotonic() - started) * 1000, 1)
        if probe.pop("pid") != pid:
            raise SystemExit("the probe answered from another process than the server's")
        row.update(probe)
        for key in ("tasks", "streams"):  # the first answer has no range yet
            row.setdefault(f"{key}_min", row[key])
            row.setdefault(f"{key}_max", row[key])
        seen = gen.cmd(cmd="missing", log=str(pub_log), older_than=OLDER_THAN, wait=60)
        row.update(
            published=seen["published"],
            missing=seen["missing"],
            dups=seen["dups"],
            p99_ms=seen["p99_ms"],
            max_ms=seen["max_ms"],
            client_open=seen["open"],
            errors=sum(seen["errors"].values()),
            churned=seen["churn"].get("closed", 0),
            reopen_failed=seen["churn"].get("reopen_failed", 0),
            ended_by_server=seen["churn"].get("ended_by_server", 0),
            redis_mb=redis_mb(self.bench.redis.port),
        )
        if seen["churn_failed"]:
            raise RuntimeError(f"the generator's churn failed: {seen['churn_failed']}")
        return row


def ask(server: Server, query: str, timeout: float = 30) -> dict[str, Any]:
    """The probe's answer; on a loaded machine it may take seconds."""
    url = f"http://127.0.0.1:{server.port}/_soak/figures?{query}"
    for attempt in range(3):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                return json.loads(reply.read())  # type: ignore[no-any-return]
        except OSError as exc:  # URLError and timeouts included
            log(f"probe: {exc!r}")
            if attempt == 2:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def runq_wait(pid: int) -> int:
    """Nanoseconds the process's main thread has waited on a run queue."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        return int(f.read().split()[1])


def redis_mb(port: int) -> float | None:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "memory"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    for line in out.splitlines():
        if line.startswith("used_memory:"):
            return round(int(line.split(":", 1)[1]) / 2**20, 2)
    return None


def judge(
    samples: list[dict[str, Any]],
    warmup: float,
    window: float,
    secs: float,
    churn: int,
    lost: int,
) -> dict[str, Any]:
    """Flat: the last window's mean RSS at most RSS_GROWTH above the first
    window's; descriptors and tasks within COUNT_DRIFT of it, plus what
    ``churn`` streams in flight hold (one descriptor each, the tasks per
    stream of the first window); and no event lost.  Tasks: the fewest of
    each interval (``tasks_min``), since the lease renewal adds one per
    stream for a moment every 10 s (bench/soak_asgi.py)."""
    first = [s for s in samples if warmup <= s["t"] < warmup + window]
    last = [s for s in samples if s["t"] >= secs - window]

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    per_stream = {
        "fds": 1.0,
        "tasks_min": mean(first, "tasks_min") / max(1.0, mean(first, "streams")),
    }
    figures: dict[str, Any] = {}
    flat = lost == 0
    keys = ("rss_mb", "fds", "tasks_min", "tasks_max", "tasks_alive", "streams")
    keys += ("gc_objects", "gc_frozen")
    for key in keys:
        a, b = mean(first, key), mean(last, key)
        entry: dict[str, Any] = {
            "first": round(a, 2),
            "last": round(b, 2),
            "change_pct": round((b - a) / a * 100, 2) if a else None,
        }
        if key == "rss_mb":
            entry["limit"] = f"< +{RSS_GROWTH:.0%}"
            entry["flat"] = b < a * (1 + RSS_GROWTH)
        elif key in per_stream:
            allowed = COUNT_DRIFT * a + churn * per_stream[key]
            entry["limit"] = f"+/- {allowed:.1f}"
            entry["flat"] = abs(b - a) <= allowed
        if "flat" in entry:
            flat = flat and entry["flat"]
        figures[key] = entry
    return {
        "flat": flat,
        "lost": lost,
        "first_window": [first[0]["t"], first[-1]["t"], len(first)],
        "last_window": [last[0]["t"], last[-1]["t"], len(last)],
        "figures": figures,
    }


COLUMNS = (
    "t",
    "rss_mb",
    "fds",
    "tasks_min",
    "tasks_max",
    "tasks_alive",
    "streams",
    "gc_objects",
    "gc_frozen",
    "cpu_pct",
    "runq_ms",
    "redis_mb",
    "probe_ms",
    "p99_ms",
    "missing",
    "churned",
    "reopen_failed",
    "errors",
)


def table(samples: list[dict[str, Any]], verdict: dict[str, Any]) -> str:
    fmt = " ".join(["{:>5}", "{:>7}", *["{:>6}"] * 4, "{:>7}", "{:>8}", "{:>8}", *["{:>6}"] * 9])
    head = ("min", "rss MB", "fds", "tasks", "max", "alive", "streams", "objects", "frozen")
    head += ("cpu%", "runq")
    head += ("redis", "probe", "p99", "missing", "churned", "failed", "errors")
    lines = [
        "tasks: fewest and most in the interval, alive: Task objects referenced, done or not;"
        " runq: ms the loop waited for a CPU in the"
        " interval; redis MB; probe, p99 (of the events that arrived in the interval) ms;"
        " missing: older than 5 s, not arrived",
        fmt.format(*head),
    ]
    for s in samples:
        cells = [f"{s['t'] / 60:.1f}", *(s.get(k) for k in COLUMNS[1:])]
        lines.append(fmt.format(*("-" if c is None else c for c in cells)))
    a, b = verdict["first_window"], verdict["last_window"]
    lines += [
        "",
        f"first window {a[0] / 60:.1f}-{a[1] / 60:.1f} min ({a[2]} samples), "
        f"last {b[0] / 60:.1f}-{b[1] / 60:.1f} min ({b[2]})",
        "{:<11} {:>10} {:>10} {:>9}  {}".format("", "first", "last", "change", "limit"),
    ]
    for key, e in verdict["figures"].items():
        mark = "" if "flat" not in e else ("  ok" if e["flat"] else "  GREW")
        change = "-" if e["change_pct"] is None else f"{e['change_pct']}%"
        lines.append(
            f"{key:<11} {e['first']:>10} {e['last']:>10} {change:>9}  {e.get('limit', '')}{mark}"
        )
    lines.append(f"events lost: {verdict['lost']}   flat: {'yes' if verdict['flat'] else 'NO'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--churn", type=int, help="streams closed and reopened a second (1 %%)")
    parser.add_argument("--rate", type=float, default=100.0, help="events a second")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, help="seconds (default: 2 min of 30)")
    parser.add_argument("--window", type=float, help="seconds compared (default 5 min)")
    parser.add_argument("--work", help="work directory (default /tmp/sse-soak-<time>)")
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace the server's allocations; every sample keeps the top sites and growth",
    )
    parser.add_argument("--out", default=str(BENCH / "results" / "soak-latest.json"))
    parser.add_argument("--table", help="print the table of a saved soak JSON and exit")
    args = parser.parse_args()
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        print(table(saved["samples"], saved["verdict"]))
        return
    if args.churn is None:
        args.churn = max(1, args.streams // 100)
    ensure_venv()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    bench = Bench(
        argparse.Namespace(
            scale="small",
            repeat=None,
            set=None,
            work=args.work or f"/tmp/sse-soak-{stamp}",
            ours_database_url=None,
            ours_redis_query="",
            patches="",
            profile=None,
        )
    )
    soak = Soak(bench, args)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "argv": sys.argv,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "machine": machine(),
        "params": {
            "minutes": args.minutes,
            "streams": args.streams,
            "churn_per_sec": args.churn,
            "rate": args.rate,
            "interval": args.interval,
            "warmup": soak.warmup,
            "window": soak.window,
        },
    }
    try:
        result = soak.run()
    finally:
        bench.redis.stop()
        meta["load_at_end"] = os.getloadavg()
        out = {"meta": meta, "samples": soak.samples}
        Path(args.out).write_text(json.dumps(out, indent=1))
    out.update(result)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(table(soak.samples, result["verdict"]))
    held = result["held_garbage"]
    if "objects" in held:
        print(
            f"garbage held at the end: {held['objects']} objects; one full collection took RSS"
            f" from {held['rss_before_mb']} to {held['rss_after_mb']} MB"
        )
    print(f"\nsamples: {args.out}   work: {bench.work}")
    sys.exit(0 if result["verdict"]["flat"] else 1)


if __name__ == "__main__":
    main()
