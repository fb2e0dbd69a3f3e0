#!/usr/bin/env python3
"""Charts of the benchmark results, as ratios (PNG, via matplotlib).

    charts.py --micro micro.json --echo echo.jsonl --out DIR

--micro: compare.py's --json output (ours, uvloop and asyncio per workload):
  DIR/micro.png, how many times ours does the work of uvloop and of CPython
  asyncio per second (for memory: how many times less it uses).
--echo: echo_compare.sh's --json output (one measurement per line): DIR/echo.png,
  each server's CPU time per request divided by the C epoll server's, per
  message size and connection count (1.0 is the ceiling; lower is better).
Either may be left out. Used by `./dev bench`.
"""

import argparse
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"uvloop": "#4c72b0", "asyncio": "#dd8452"}
ECHO_SERVERS = [
    ("ours-protocol", "ours, Protocol", "#2a9d3a"),
    ("ours-streams", "ours, streams", "#8fd18f"),
    ("uvloop-protocol", "uvloop, protocol", "#4c72b0"),
    ("uvloop-streams", "uvloop, streams", "#9db4de"),
    ("asyncio-protocol", "CPython asyncio, protocol", "#dd8452"),
    ("asyncio-streams", "CPython asyncio, streams", "#f2c09a"),
]


def micro_ratios(rows):
    """[(workload, {"uvloop": r, "asyncio": r})]: ours over theirs, so that
    greater is better for every row (memory: theirs over ours)."""
    out = []
    for row in rows:
        ours = row.get("ours")
        ratios = {}
        for other in ("uvloop", "asyncio"):
            theirs = row.get(other)
            if not ours or not theirs:
                continue
            ratios[other] = theirs / ours if row.get("lower_is_better") else ours / theirs
        if ratios:
            out.append((row["workload"], ratios))
    return out


def chart_micro(path, out_dir):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    rows = micro_ratios(data["rows"])
    if not rows:
        print(f"charts.py: no rows with results in {path}", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(rows) + 1.6))
    height = 0.38
    for i, other in enumerate(("uvloop", "asyncio")):
        ys = [k + (i - 0.5) * height for k in range(len(rows))]
        values = [ratios.get(other, 0) for _, ratios in rows]
        label = "vs uvloop" if other == "uvloop" else "vs CPython asyncio"
        bars = ax.barh(ys, values, height=height, color=COLORS[other], label=label)
        for bar, v in zip(bars, values):
            if v:
                ax.text(v * 1.04, bar.get_y() + bar.get_height() / 2, f"{v:.1f}x",
                        va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([w for w, _ in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlim(right=max(max(r.values()) for _, r in rows) * 2.2)
    ax.set_xlabel("ours ÷ theirs, log scale (how many times the work per second; "
                  "memory: how many times less)")
    ax.set_title(f"Micro benchmarks: ours against uvloop and CPython asyncio "
                 f"({data.get('clock', 'wall')} clock; > 1: ours is ahead)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    out = os.path.join(out_dir, "micro.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def echo_medians(path):
    """{(size, conns): {server: median server CPU µs per request}}."""
    samples = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            m = json.loads(line)
            res = m["result"]
            if "size" not in res or res.get("server_cpu_us_per_req", -1) < 0:
                continue  # handshake rows: no C server to compare with
            cell = (res["size"], res["connections"])
            samples.setdefault(cell, {}).setdefault(m["server"], []).append(
                res["server_cpu_us_per_req"])
    return {cell: {s: statistics.median(v) for s, v in by_server.items()}
            for cell, by_server in samples.items()}


def size_name(n):
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


def chart_echo(path, out_dir):
    medians = echo_medians(path)
    cells = sorted(c for c, by_server in medians.items() if by_server.get("c-epoll"))
    if not cells:
        print(f"charts.py: no echo cell with the C server in {path}", file=sys.stderr)
        return None
    servers = [s for s in ECHO_SERVERS if any(s[0] in medians[c] for c in cells)]
    fig, ax = plt.subplots(figsize=(12, 0.9 * len(cells) * len(servers) / 3 + 1.8))
    height = 0.8 / len(servers)
    for i, (key, label, color) in enumerate(servers):
        ys, values = [], []
        for k, cell in enumerate(cells):
            v = medians[cell].get(key)
            if v is None:
                continue
            ys.append(k + (i - (len(servers) - 1) / 2) * height)
            values.append(v / medians[cell]["c-epoll"])
        bars = ax.barh(ys, values, height=height, color=color, label=label)
        for bar, v in zip(bars, values):
            ax.text(v + 0.02, bar.get_y() + bar.get_height() / 2, f"{v:.2f}x", va="center",
                    fontsize=7)
    ax.set_yticks(range(len(cells)))
    ax.set_yticklabels([f"{size_name(s)}, {c} conns" for s, c in cells], fontsize=9)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=1.0, label="C epoll server (ceiling)")
    ax.set_xlim(0, max(max(v / m["c-epoll"] for s, v in m.items()) for m in
                       (medians[c] for c in cells)) * 1.15)
    ax.set_xlabel("server CPU time per request ÷ the C epoll server's (lower is better)")
    ax.set_title("Echo servers: CPU per request relative to a hand-written C epoll server")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = os.path.join(out_dir, "echo.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--micro", help="compare.py --json output")
    parser.add_argument("--echo", help="echo_compare.sh --json output")
    parser.add_argument("--out", required=True, help="directory for the PNG files")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    written = []
    if args.micro:
        written.append(chart_micro(args.micro, args.out))
    if args.echo:
        written.append(chart_echo(args.echo, args.out))
    for path in written:
        if path:
            print(f"chart: {path}")


if __name__ == "__main__":
    main()
