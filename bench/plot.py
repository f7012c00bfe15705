"""Pictures of a bench run: CPU per delivered event and p99 latency against
the publish rate (the ``rate`` scenario), one line per system.

    bench/.venv/bin/python bench/plot.py results.json outdir   # -> outdir/cpu.png, p99.png

Points are medians over repeats; the bars span the lowest and highest repeat.
run.py calls this at the end of a run.
"""

# ruff: noqa: T201 -- a command-line tool: its output is printed
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.ticker import FuncFormatter, LogLocator

# system -> line style; the order is the legend's.  Unknown systems get defaults.
STYLES: dict[str, dict[str, Any]] = {
    "ours-uvicorn": {"color": "tab:blue", "marker": "o", "linewidth": 2.5},
    "ours-daphne": {"color": "tab:cyan", "marker": "s"},
    "ours-uvicorn-cluster": {"color": "tab:green", "marker": "h"},
    "ours-uvicorn-2w": {"color": "tab:purple", "marker": "^"},
    "ours-daphne-2w": {"color": "tab:pink", "marker": "v"},
    "sse-starlette": {"color": "tab:orange", "marker": "D"},
    "django-eventstream": {"color": "tab:red", "marker": "P"},
    "floor": {"color": "black", "marker": "x", "linestyle": "--"},
}

# file name (key) -> (y label, title, the value of a result row)
PLOTS = {
    "cpu": (
        "server CPU per delivered event (µs, user + system)",
        "Server CPU per delivered event",
        lambda r: r["cpu_s_per_1k"] * 1000 if r.get("cpu_s_per_1k") else None,
    ),
    "p99": (
        "p99 latency, publish to client (ms)",
        "p99 latency of delivery",
        lambda r: r.get("p99_ms"),
    ),
}


def series(results: list[dict[str, Any]], value: Any) -> dict[str, list[tuple[float, list[float]]]]:
    """system -> [(rate, values of its repeats)], rates ascending."""
    points: dict[str, dict[float, list[float]]] = {}
    for row in results:
        if row.get("scenario") != "rate" or "error" in row:
            continue
        v = value(row)
        if v is not None:
            points.setdefault(row["system"], {}).setdefault(row["rate"], []).append(v)
    order = [*STYLES, *sorted(set(points) - set(STYLES))]
    return {s: sorted(points[s].items()) for s in order if s in points}


def draw(data: dict[str, Any], key: str, out: Path) -> Path | None:
    ylabel, title, value = PLOTS[key]
    lines = series(data["results"], value)
    if not lines:
        return None
    meta = data.get("meta", {})
    conns = sorted({r["n"] for r in data["results"] if r.get("scenario") == "rate" and "n" in r})
    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=120)
    for system, points in lines.items():
        rates = [rate for rate, _ in points]
        mid = [statistics.median(v) for _, v in points]
        low = [m - min(v) for m, (_, v) in zip(mid, points, strict=True)]
        high = [max(v) - m for m, (_, v) in zip(mid, points, strict=True)]
        ax.errorbar(rates, mid, yerr=[low, high], label=system, capsize=3, **STYLES.get(system, {}))
    if key == "p99":
        ax.axhline(50, color="grey", linewidth=1, linestyle=":")
        ax.text(
            0.99,
            50,
            "50 ms: the max scenario's bar ",
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="bottom",
            fontsize=8,
            color="grey",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Log scale, plain numbers: 1, 2, 5, 10, 20, ... (and 3, 30, ... on a short axis)
    low, high = ax.get_ylim()
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 3, 5) if high / low < 30 else (1, 2, 5)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    all_rates = sorted({rate for points in lines.values() for rate, _ in points})
    ax.set_xticks(all_rates, [f"{r:g}" for r in all_rates])
    ax.minorticks_off()
    repeats = max(len(v) for points in lines.values() for _, v in points)
    ax.set_xlabel("publish rate (events/s, to random sessions, one stream each)")
    ax.set_ylabel(ylabel)
    streams = ", ".join(f"{n:,}" for n in conns)
    ax.set_title(
        f"{title}: {streams} streams\n"
        f"{meta.get('scale', '?')} scale, {meta.get('date', '')[:16]}, "
        f"{meta.get('machine', {}).get('cpu', '')}; median of {repeats}, bars: min to max",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)  # never over a line
    fig.tight_layout()
    path = out / f"{key}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for key in PLOTS:
        path = draw(data, key, out)
        print(f"{key}: {path or 'no rate rows to plot'}")


if __name__ == "__main__":
    main()
