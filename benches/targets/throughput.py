"""A benchmark target: an asyncio program that keeps its loop busy with a fixed kind of work
and counts how much of it gets done.

    python throughput.py OUT [--tasks N] [--work K] [--depth D] [--interval S]
                             [--duration S] [--uvloop]

N tasks each repeat one "op": a call chain D functions deep whose innermost function does K
iterations of integer arithmetic, then `await asyncio.sleep(0)` (back through the ready
queue). A timer task keeps `loop._scheduled` non-empty, as a real service's timeouts do.
Every S seconds a reporter appends `<CLOCK_MONOTONIC seconds> <ops so far>` to OUT (the
first line, `ready <pid>`, says the loop is running). The ops rate over any window is read
from those lines; run it alone and under a profiler to see what the profiler costs it.

Standard library only; CPython 3.8+.
"""

import argparse
import asyncio
import os
import sys
import time

ops = 0


def leaf(k):
    s = 0
    for i in range(k):
        s += i * i ^ (i >> 3)
    return s


def level(n, k):
    if n == 0:
        return leaf(k)
    return level(n - 1, k) + 1


async def worker(depth, work):
    global ops
    while True:
        level(depth, work)
        ops += 1
        await asyncio.sleep(0)


async def timers():
    # A few live timers, like a service's timeouts.
    while True:
        await asyncio.sleep(0.05)


async def reporter(out, interval):
    with open(out, "a") as f:
        f.write("ready %d\n" % os.getpid())
        f.flush()
        while True:
            f.write("%.6f %d\n" % (time.monotonic(), ops))
            f.flush()
            await asyncio.sleep(interval)


async def main(args):
    loop = asyncio.get_running_loop()
    for _ in range(args.tasks):
        loop.create_task(worker(args.depth, args.work))
    loop.create_task(timers())
    report = loop.create_task(reporter(args.out, args.interval))
    if args.duration > 0:
        await asyncio.sleep(args.duration)
    else:
        await report


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--work", type=int, default=200)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args()
    kwargs = {}
    if args.uvloop:
        import uvloop

        if sys.version_info >= (3, 12):
            kwargs["loop_factory"] = uvloop.new_event_loop
        else:
            uvloop.install()
    try:
        asyncio.run(main(args), **kwargs)
    except KeyboardInterrupt:
        sys.exit(0)
