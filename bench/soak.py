"""Sampler, checker and plotter of bench/soak.

Samples the server every second (resident memory and threads from /proc/PID/status, open
descriptors from /proc/PID/fd, alive runtime tasks from the concord_tokio_tasks_alive gauge of
/metrics) during a short warm-up run of the load generator, while the server then idles (the
start), while the load generator runs, and after the clients have left; writes
the samples to a CSV, draws them into a PNG and checks that what the load raised came back down:

- sockets and tasks: at most FD_MARGIN / TASK_MARGIN above the idle start (idle, the server holds
  its listener and its jobs; a client that left must leave nothing behind);
- all descriptors: at most FD_MARGIN + POOL_FDS above the idle start, because the SQLite read pool
  opens its connections on demand and keeps them (up to 3 more than at start, each with the
  database, its WAL and its shared-memory file);
- resident memory: at most RSS_MARGIN_MIB above the idle start, and no growth while the load is
  steady (the second half of the load may not end more than RSS_GROWTH_MIB above its start), since
  the allocator keeps some freed memory for reuse, so "back to the start" exactly is not the test.

The start is taken after the warm-up because a cold server has not yet made its one-time
allocations, which it keeps by design: the Argon2 working memory of the first password check
(19 MiB, reused by every later one), the read pool's connections and their page caches. Counting
them as growth would hide a real leak of that size behind them.

Exits 1 if a check fails, so `bench/soak` fails with it.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

FD_MARGIN = 2
POOL_FDS = 3 * 3
KEYS = ("rss_mib", "fds", "sockets", "tasks", "threads")
TASK_MARGIN = 2
RSS_MARGIN_MIB = 32
RSS_GROWTH_MIB = 16


def sample(pid, metrics_url):
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(next(l for l in status.splitlines() if l.startswith(name + ":")).split()[1])
    fds = sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed between listing and reading
        fds += 1
        sockets += target.startswith("socket:")
    tasks = None
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("concord_tokio_tasks_alive "):
                    tasks = float(line.split()[1])
    except OSError:
        pass  # a slow scrape under load leaves a gap in the task column, not a failed run
    return {"rss_mib": field("VmRSS") / 1024, "fds": fds, "sockets": sockets, "tasks": tasks, "threads": field("Threads")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--out", required=True, help="path prefix: writes PREFIX.csv, PREFIX.png, PREFIX.json")
    parser.add_argument("--warmup", type=int, default=20, help="seconds of load before the idle start")
    parser.add_argument("--idle", type=int, default=15, help="seconds sampled before the load")
    parser.add_argument("--settle", type=int, default=60, help="seconds sampled after the clients left")
    parser.add_argument("load", nargs=argparse.REMAINDER, help="the load generator's command line, after --")
    args = parser.parse_args()
    load_cmd = args.load[1:] if args.load[:1] == ["--"] else args.load

    rows = []
    started = time.monotonic()

    def tick(phase):
        rows.append({"t": round(time.monotonic() - started, 1), "phase": phase, **sample(args.pid, args.metrics)})

    def sample_for(seconds, phase):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tick(phase)
            time.sleep(1)

    # The same load generator for a few seconds: its `--seconds` value replaced.
    warmup_cmd = list(load_cmd)
    warmup_cmd[warmup_cmd.index("--seconds") + 1] = str(args.warmup)
    warmup = subprocess.Popen(warmup_cmd, stdout=subprocess.DEVNULL)
    while warmup.poll() is None:
        tick("warmup")
        time.sleep(1)
    if warmup.returncode != 0:
        sys.exit("the warm-up load failed")
    sample_for(args.idle, "idle")
    load = subprocess.Popen(load_cmd, stdout=subprocess.PIPE, text=True)
    load_started = time.monotonic()
    while load.poll() is None:
        tick("load")
        time.sleep(1)
    load_result = load.stdout.read().strip()
    load_seconds = time.monotonic() - load_started
    sample_for(args.settle, "after")

    with open(args.out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["t", "phase", "rss_mib", "fds", "sockets", "tasks", "threads"])
        writer.writeheader()
        writer.writerows(rows)

    def median(phase, key, last=None):
        values = [r[key] for r in rows if r["phase"] == phase and r[key] is not None]
        return statistics.median(values[-last:] if last else values)

    load_rows = [r for r in rows if r["phase"] == "load"]
    half = load_rows[len(load_rows) // 2 :]
    figures = {
        "load_seconds": round(load_seconds),
        "start": {k: median("idle", k) for k in KEYS},
        "peak": {k: max(r[k] for r in load_rows if r[k] is not None) for k in KEYS},
        "end": {k: median("after", k, last=10) for k in KEYS},
        "second_half_rss_mib": [
            statistics.median(r["rss_mib"] for r in half[:30]),
            statistics.median(r["rss_mib"] for r in half[-30:]),
        ],
        "load": json.loads(load_result) if load_result.startswith("{") else {"ok": False, "output": load_result},
    }
    start, end = figures["start"], figures["end"]
    growth = figures["second_half_rss_mib"][1] - figures["second_half_rss_mib"][0]
    checks = {
        f"sockets back within {FD_MARGIN}": end["sockets"] <= start["sockets"] + FD_MARGIN,
        f"descriptors back within {FD_MARGIN + POOL_FDS}": end["fds"] <= start["fds"] + FD_MARGIN + POOL_FDS,
        f"tasks back within {TASK_MARGIN}": end["tasks"] <= start["tasks"] + TASK_MARGIN,
        f"RSS back within {RSS_MARGIN_MIB} MiB": end["rss_mib"] <= start["rss_mib"] + RSS_MARGIN_MIB,
        f"RSS grew at most {RSS_GROWTH_MIB} MiB over the second half of the load": growth <= RSS_GROWTH_MIB,
        "load generator: every check passed": figures["load"].get("ok") is True and load.returncode == 0,
    }
    figures["checks"] = checks
    with open(args.out + ".json", "w") as f:
        json.dump(figures, f, indent=2)
    plot(rows, args.out + ".png")

    print(json.dumps(figures, indent=2))
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        print(f"FAILED: {name}", file=sys.stderr)
    sys.exit(1 if failed else 0)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    t = [r["t"] for r in rows]
    load_t = [r["t"] for r in rows if r["phase"] == "load"]
    for ax, key, label in zip(
        axes, ("rss_mib", "fds", "tasks"), ("resident memory (MiB)", "open descriptors", "alive tokio tasks")
    ):
        ax.plot(t, [r[key] if r[key] is not None else float("nan") for r in rows], linewidth=1, label=label)
        if key == "fds":
            ax.plot(t, [r["sockets"] for r in rows], linewidth=1, label="of them sockets")
            ax.legend(loc="upper right")
        warm_t = [r["t"] for r in rows if r["phase"] == "warmup"]
        if warm_t:
            ax.axvspan(warm_t[0], warm_t[-1], color="tab:gray", alpha=0.12, label="warm-up")
        if load_t:
            ax.axvspan(load_t[0], load_t[-1], color="tab:orange", alpha=0.12, label="clients connected")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left")
    axes[-1].set_xlabel("seconds")
    fig.suptitle("Concord soak: warm-up, idle (the start), steady mixed load, clients gone")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
