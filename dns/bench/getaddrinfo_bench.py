"""Lookups per second with loop.getaddrinfo (the system resolver on a thread
pool), on asyncio's default loop or uvloop, for dns/bench/run.sh.

    python3 getaddrinfo_bench.py --loop=uvloop --names=1000 --count=20000 --concurrency=100

The same workload as //dns:dns_bench: `concurrency` tasks share `count`
lookups (AF_INET, SOCK_STREAM, port 80) of bench0.test ... bench<names-1>.test,
round-robin, after a warm-up of min(count, 1000). The system resolver must
point at the benchmark's dnsmasq (run.sh does it in a private mount namespace).
Prints "<loop> concurrency=<C> count=<N> seconds=<S> lookups_per_second=<R>".
"""

import argparse
import asyncio
import socket
import sys
import time


async def run_lookups(names, count, concurrency):
    loop = asyncio.get_running_loop()
    state = {"next": 0, "failures": 0}

    async def worker():
        while state["next"] < count:
            i = state["next"]
            state["next"] += 1
            try:
                infos = await loop.getaddrinfo(
                    f"bench{i % names}.test", 80, family=socket.AF_INET, type=socket.SOCK_STREAM
                )
                if len(infos) != 1:
                    state["failures"] += 1
            except socket.gaierror as e:
                if state["failures"] == 0:
                    print(f"getaddrinfo_bench: {e}", file=sys.stderr)
                state["failures"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, state["failures"]


async def main(args):
    _, failures = await run_lookups(args.names, min(args.count, 1000), args.concurrency)
    seconds, more = await run_lookups(args.names, args.count, args.concurrency)
    failures += more
    print(
        f"{args.loop} concurrency={args.concurrency} count={args.count} "
        f"seconds={seconds:.4f} lookups_per_second={args.count / seconds:.0f}"
    )
    if failures:
        print(f"getaddrinfo_bench: {failures} failed lookups", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.exit(asyncio.run(main(args)))
