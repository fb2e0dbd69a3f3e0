#!/usr/bin/env python3
"""Merges micro.cc's Google Benchmark JSON with micro.py's JSON (asyncio and
uvloop) into one markdown table. Used by compare.sh.

    compare.py --ours micro.json --uvloop uvloop.json --asyncio asyncio.json \
        [--json rows.json] [--asio asio_micro.json]

--json also writes the table's rows, unformatted, for tools/bench/charts.py.
With --asio (Google Benchmark JSON of asio_micro.cc: the timer and
round-trip workloads on Boost.Asio), the table gains an Asio column and
ours/Asio ratios on the rows it has.
"""

import argparse
import json
import re
import sys

# (key, description, unit). Keys are micro.cc's benchmark names without
# Google Benchmark's /iterations:N, /repeats:N and /real_time suffixes; a
# key "name:counter" reads a user counter of that benchmark instead of
# items_per_second.
ROWS = [
    ("call_soon_chained", "call_soon chained (one callback re-schedules itself)", "callbacks/s"),
    ("call_soon_batched/1000", "call_soon batched, 1000 per loop iteration", "callbacks/s"),
    ("call_soon_batched/1000000", "call_soon batched, 1M then run", "callbacks/s"),
    ("create_task_await", "create_task + await of a trivial coroutine", "tasks/s"),
    ("coro_await", "direct await of a trivial coroutine", "awaits/s"),
    ("sleep0_switch", "sleep(0) switches between two tasks", "switches/s"),
    ("future_set_result_await", "Future: call_soon(set_result) + await", "futures/s"),
    ("queue_put_get/maxsize:0", "Queue put/get, producer + consumer task, unbounded", "items/s"),
    ("queue_put_get/maxsize:1", "Queue put/get, producer + consumer task, maxsize=1", "items/s"),
    ("call_later_100k", "100k call_later, random delays <= 10 ms (wall clock)", "timers/s"),
    ("call_later_100k:timers_per_cpu_second", "100k call_later, per CPU second", "timers/s"),
    ("timer_churn_1m", "1M call_later + cancel before firing (wait_for's timer)", "timers/s"),
    ("call_soon_threadsafe_roundtrip", "call_soon_threadsafe round trips from a thread",
     "round trips/s"),
    ("memory_per_suspended_task:bytes_per_task", "memory per task suspended on an Event",
     "bytes (lower is better)"),
]

# micro.py's names for counter rows.
PY_NAMES = {
    "call_later_100k:timers_per_cpu_second": "call_later_100k_cpu",
    "memory_per_suspended_task:bytes_per_task": "memory_per_suspended_task",
}


# Rated by the wall clock whatever --clock says: waiting is part of them.
WALL_CLOCK_ONLY = ("call_later_100k", "timer_churn_1m", "call_soon_threadsafe_roundtrip")


def base_name(run_name):
    name = re.sub(r"/(iterations|repeats|min_time):[^/]+", "", run_name)
    return re.sub(r"/(real_time|process_time|manual_time)$", "", name)


def load_ours(path, clock):
    """{key: value} from Google Benchmark JSON: medians when repeated."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    by_name = {}
    for b in data.get("benchmarks", []):
        if b.get("error_occurred"):
            print(f"warning: {b['name']}: {b.get('error_message')}", file=sys.stderr)
            continue
        kind = b.get("run_type", "iteration")
        if kind == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = base_name(b.get("run_name", b["name"]))
        # A median beats a single iteration run; several iteration runs
        # (no aggregates) keep the last.
        if kind == "iteration" and by_name.get(name, {}).get("run_type") == "aggregate":
            continue
        by_name[name] = b
    values = {}
    for name, b in by_name.items():
        items = b.get("items_per_second")
        if items is not None:
            if (clock == "cpu" and name not in WALL_CLOCK_ONLY and b.get("cpu_time") and
                    b.get("real_time")):
                items *= b["real_time"] / b["cpu_time"]
            values[name] = items
        for counter, value in b.items():
            if counter in ("bytes_per_task", "timers_per_cpu_second", "allocs_per_task",
                           "malloc_bytes_per_task"):
                values[f"{name}:{counter}"] = value
    return values


def load_py(path):
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"warning: {path}: {e}", file=sys.stderr)
        return {}


def fmt_rate(v):
    if v is None:
        return "n/a"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def fmt_bytes(v):
    return "n/a" if v is None else f"{v:.0f} B"


def ratio_of(ours, other):
    return f"{ours / other:.2f}x" if ours is not None and other else "n/a"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", required=True)
    parser.add_argument("--uvloop")
    parser.add_argument("--asyncio")
    parser.add_argument("--asio")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--json", help="also write the rows here, as JSON")
    args = parser.parse_args()

    ours = load_ours(args.ours, args.clock)
    uvloop = load_py(args.uvloop)
    aio = load_py(args.asyncio)
    asio = load_ours(args.asio, args.clock) if args.asio else None

    header = "| workload | unit | ours | uvloop | asyncio | ours/uvloop |"
    rule = "|---|---|--:|--:|--:|--:|"
    if asio is not None:
        header += " Boost.Asio | ours/Asio |"
        rule += "--:|--:|"
    print(header)
    print(rule)
    rows = []
    for key, description, unit in ROWS:
        py_key = PY_NAMES.get(key, key)
        o, u, a = ours.get(key), uvloop.get(py_key), aio.get(py_key)
        rows.append({"key": key, "workload": description, "unit": unit,
                     "lower_is_better": key.endswith("bytes_per_task"),
                     "ours": o, "uvloop": u, "asyncio": a})
        fmt = fmt_bytes if key.endswith("bytes_per_task") else fmt_rate
        line = f"| {description} | {unit} | {fmt(o)} | {fmt(u)} | {fmt(a)} | {ratio_of(o, u)} |"
        if asio is not None:
            b = asio.get(key)
            line += f" {fmt(b) if b is not None else ''} | {ratio_of(o, b) if b else ''} |"
        print(line)

    extra = []
    allocs = ours.get("memory_per_suspended_task:allocs_per_task")
    malloc_bytes = ours.get("memory_per_suspended_task:malloc_bytes_per_task")
    if allocs is not None:
        extra.append(f"ours: {allocs:.2f} allocations per suspended task")
    if malloc_bytes is not None:
        extra.append(f"{malloc_bytes:.0f} B per task as malloc sees it (with its chunk headers)")
    if extra:
        print()
        print("Memory: " + "; ".join(extra) + ".")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"clock": args.clock, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
