#!/usr/bin/env python3
"""The workloads of tools/bench/micro.cc on Python's asyncio or on uvloop.

    /usr/bin/python3 micro.py --loop asyncio|uvloop [--json] [--repetitions N]
                              [--filter SUBSTRING] [--scale F] [--clock wall|cpu]

With --json prints {name: rate} on stdout: items per wall-clock second (per
CPU second with --clock cpu), the median of the repetitions. Progress goes to
stderr. The names are those of micro.cc's benchmarks;
"memory_per_suspended_task" is bytes per task (tracemalloc: what Python's
allocators hand out, as micro.cc counts operator new), and
"call_later_100k_cpu" is timers per CPU second.
"""

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import threading
import time
import tracemalloc

CALLBACKS = 1_000_000
TASKS = 1_000_000
AWAITS = 10_000_000
SWITCHES = 1_000_000
FUTURES = 1_000_000
ITEMS = 1_000_000
TIMERS = 100_000
MAX_TIMER_DELAY = 0.010
ROUND_TRIPS = 200_000
SUSPENDED_TASKS = 100_000


class Timer:
    """Wall-clock and CPU time of a block."""

    def __enter__(self):
        self.cpu = time.process_time()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu


def scaled(n, scale):
    return max(1, int(n * scale))


# --- call_soon ---------------------------------------------------------------


def call_soon_chained(loop, scale):
    n = scaled(CALLBACKS, scale)
    remaining = n

    def step():
        nonlocal remaining
        remaining -= 1
        if remaining > 0:
            loop.call_soon(step)
        else:
            loop.stop()

    with Timer() as t:
        loop.call_soon(step)
        loop.run_forever()
    return n, t


def call_soon_batched(batch):
    def bench(loop, scale):
        n = scaled(CALLBACKS, scale)
        size = min(batch, n)
        ran = 0

        def cb():
            nonlocal ran
            ran += 1

        call_soon = loop.call_soon
        with Timer() as t:
            for _ in range(0, n, size):
                for _ in range(size):
                    call_soon(cb)
                call_soon(loop.stop)
                loop.run_forever()
        assert ran == n // size * size, ran
        return ran, t

    return bench


# --- coroutines and tasks ----------------------------------------------------


async def trivial(i):
    return i


def create_task_await(loop, scale):
    n = scaled(TASKS, scale)

    async def main():
        create_task = asyncio.create_task
        total = 0
        for i in range(n):
            total += await create_task(trivial(i))
        return total

    with Timer() as t:
        loop.run_until_complete(main())
    return n, t


def coro_await(loop, scale):
    n = scaled(AWAITS, scale)

    async def main():
        total = 0
        for i in range(n):
            total += await trivial(i)
        return total

    with Timer() as t:
        loop.run_until_complete(main())
    return n, t


def sleep0_switch(loop, scale):
    n = scaled(SWITCHES, scale)
    resumes = 0

    async def yield_n_times(k):
        nonlocal resumes
        sleep = asyncio.sleep
        for _ in range(k):
            await sleep(0)
            resumes += 1

    async def main():
        a = asyncio.create_task(yield_n_times(n // 2))
        b = asyncio.create_task(yield_n_times(n // 2))
        await a
        await b

    with Timer() as t:
        loop.run_until_complete(main())
    assert resumes == n // 2 * 2
    return resumes, t


def future_set_result_await(loop, scale):
    n = scaled(FUTURES, scale)

    async def main():
        total = 0
        create_future = loop.create_future
        call_soon = loop.call_soon
        for i in range(n):
            fut = create_future()
            call_soon(fut.set_result, i)
            total += await fut
        return total

    with Timer() as t:
        loop.run_until_complete(main())
    return n, t


# --- queues ------------------------------------------------------------------


def queue_put_get(maxsize):
    def bench(loop, scale):
        n = scaled(ITEMS, scale)

        async def produce(q):
            put = q.put
            for i in range(n):
                await put(i)

        async def consume(q):
            get = q.get
            total = 0
            for _ in range(n):
                total += await get()
            return total

        async def main():
            q = asyncio.Queue(maxsize)
            consumer = asyncio.create_task(consume(q))
            producer = asyncio.create_task(produce(q))
            await producer
            return await consumer

        with Timer() as t:
            total = loop.run_until_complete(main())
        assert total == n * (n - 1) // 2
        return n, t

    return bench


# --- timers ------------------------------------------------------------------


def call_later_100k(loop, scale):
    n = scaled(TIMERS, scale)
    rng = random.Random(42)
    delays = [rng.uniform(0.0, MAX_TIMER_DELAY) for _ in range(n)]
    fired = 0

    def cb():
        nonlocal fired
        fired += 1
        if fired == n:
            loop.stop()

    call_later = loop.call_later
    with Timer() as t:
        for d in delays:
            call_later(d, cb)
        loop.run_forever()
    return n, t


# --- call_soon_threadsafe ----------------------------------------------------


def call_soon_threadsafe_roundtrip(loop, scale):
    n = scaled(ROUND_TRIPS, scale)
    answered = threading.Lock()
    answered.acquire()
    count = 0

    def on_loop():
        nonlocal count
        count += 1
        answered.release()

    def poster():
        post = loop.call_soon_threadsafe
        for _ in range(n):
            post(on_loop)
            answered.acquire()
        post(loop.stop)

    with Timer() as t:
        thread = threading.Thread(target=poster)
        thread.start()
        loop.run_forever()
        thread.join()
    assert count == n
    return n, t


# --- memory per suspended task -----------------------------------------------


def memory_per_suspended_task(loop, scale):
    n = scaled(SUSPENDED_TASKS, scale)

    async def wait_for_event(event):
        await event.wait()

    async def main():
        event = asyncio.Event()
        tasks = [None] * n  # the handles are the caller's, not the tasks' cost
        await asyncio.sleep(0)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            tasks[i] = asyncio.create_task(wait_for_event(event))
        await asyncio.sleep(0)  # every task runs up to event.wait()
        after = tracemalloc.get_traced_memory()[0]
        assert not any(t.done() for t in tasks)
        event.set()
        for t in tasks:
            await t
        return (after - before) / n

    tracemalloc.start()
    try:
        return loop.run_until_complete(main())
    finally:
        tracemalloc.stop()


# -----------------------------------------------------------------------------

BENCHMARKS = [
    ("call_soon_chained", call_soon_chained),
    ("call_soon_batched/1000", call_soon_batched(1000)),
    ("call_soon_batched/1000000", call_soon_batched(1_000_000)),
    ("create_task_await", create_task_await),
    ("coro_await", coro_await),
    ("sleep0_switch", sleep0_switch),
    ("future_set_result_await", future_set_result_await),
    ("queue_put_get/maxsize:0", queue_put_get(0)),
    ("queue_put_get/maxsize:1", queue_put_get(1)),
    ("call_later_100k", call_later_100k),
    ("call_soon_threadsafe_roundtrip", call_soon_threadsafe_roundtrip),
    ("memory_per_suspended_task", memory_per_suspended_task),
]

# Rated by the wall clock whatever --clock says: waiting is part of them.
WALL_CLOCK_ONLY = ("call_later_100k", "call_soon_threadsafe_roundtrip")


def new_loop(kind):
    if kind == "uvloop":
        import uvloop  # pylint: disable=import-outside-toplevel

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_one(name, bench, loop, args, results):
    if name == "memory_per_suspended_task":
        results[name] = bench(loop, args.scale)  # bytes per task, one run
        return
    runs = [bench(loop, args.scale) for _ in range(args.repetitions)]
    use_cpu = args.clock == "cpu" and name not in WALL_CLOCK_ONLY
    results[name] = statistics.median(n / (t.cpu if use_cpu else t.wall) for n, t in runs)
    if name == "call_later_100k":
        results[name + "_cpu"] = statistics.median(n / t.cpu for n, t in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--json", action="store_true", help="print JSON {name: rate}")
    parser.add_argument("--repetitions", type=int, default=3, help="report the median of N runs")
    parser.add_argument("--filter", default="", help="run benchmarks whose name contains this")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the work sizes")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="rate by wall-clock or by process CPU time")
    args = parser.parse_args()

    results = {}
    for name, bench in BENCHMARKS:
        if args.filter not in name:
            continue
        loop = new_loop(args.loop)
        asyncio.set_event_loop(loop)
        try:
            run_one(name, bench, loop, args, results)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
        unit = "bytes/task" if name.startswith("memory") else "/s"
        print(f"{args.loop:8s} {name:40s} {results[name]:14,.0f} {unit}", file=sys.stderr,
              flush=True)

    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
