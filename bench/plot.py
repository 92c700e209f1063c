"""Plots of the last full bench/run for BENCHMARKS.md: Y2 propagation latency by observers and Y3
p99 latency by offered rate, one line per server.

Usage: python plot.py RESULTS_DIR OUT_DIR   (bench/plot runs it with matplotlib from its venv)
"""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

SHORT = {
    "y-websocket": "y-ws",
    "y-websocket-leveldb": "y-ws+ldb",
    "pycrdt-websocket": "pycrdt",
    "concord-tmpfs": "c-tmpfs",
    "hocuspocus": "hocus",
}
# Y3 runs stop at p99 >= 100 ms: the line every server is read against.
P99_LIMIT_MS = 100


def runs(results: pathlib.Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(results.glob("rust-*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[path.stem.removeprefix("rust-")] = [r for r in lines if "error" not in r]
    return out


def plot_y2(all_runs: dict[str, list[dict]], out: pathlib.Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for name, lines in all_runs.items():
        y2 = sorted((r for r in lines if r.get("scenario") == "y2"), key=lambda r: r["observers"])
        if not y2:
            continue
        xs = [r["observers"] for r in y2]
        for ax, key in zip(axes, ("p50_ms", "p99_ms")):
            ax.plot(xs, [r["run"][key] for r in y2], marker="o", label=SHORT.get(name, name))
    for ax, title in zip(axes, ("p50", "p99")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("observers of one document (one writer, 20 edits/s)")
        ax.set_ylabel("writer's edit to observer (ms)")
        ax.set_title(f"Y2 propagation latency, {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_y3(all_runs: dict[str, list[dict]], out: pathlib.Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, lines in all_runs.items():
        y3 = next((r for r in lines if r.get("scenario") == "y3"), None)
        if not y3:
            continue
        steps = y3["steps"]
        ax.plot([s["offered_per_s"] for s in steps], [s["p99_ms"] for s in steps], marker="o", label=SHORT.get(name, name))
    ax.axhline(P99_LIMIT_MS, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("offered edits/s (50 writers in 50 documents, one observer each)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title("Y3 throughput: p99 by offered rate (a run stops at p99 >= 100 ms or a loss)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    results, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    all_runs = runs(results)
    plot_y2(all_runs, out / "y2.png")
    plot_y3(all_runs, out / "y3.png")


if __name__ == "__main__":
    main()
