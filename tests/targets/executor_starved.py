"""A service whose loop's default executor is starved: every worker is stuck in
`render_export_sync` (a long time.sleep) and work keeps queueing behind them, submitted both
through `asyncio.to_thread` (3.9+) and `loop.run_in_executor(None, ...)` (as in issue 16: 6
workers stuck, 30+ items queued). The loop itself stays healthy (a ticker).

`--healthy`: the same service using the executor lightly (one 10 ms job every 0.3 s): the
executor exists, nothing queues, no worker is stuck.

The truth file is written again after every change to the queue the target makes, with the
history of `(time.monotonic(), qsize)` after each submission (`history`), so a test can
bound what a read from outside may have seen while it ran. Workers' names and native ids
are measured here through the executor's own `_threads`.
"""

import asyncio
import concurrent.futures
import gc
import sys
import threading
import time

import truth

HEALTHY = "--healthy" in sys.argv[2:]
# Work items in all (the first `max_workers` run, the rest queue), then one more each STEP s.
INITIAL = 36
STEP = 0.3
MAX_ITEMS = 48


def render_export_sync(n):
    if HEALTHY:
        time.sleep(0.01)
        return n
    time.sleep(3600)
    return n


def executor_of(loop):
    if truth.is_uvloop(loop):
        found = [r for r in gc.get_referents(loop) if isinstance(r, concurrent.futures.ThreadPoolExecutor)]
        return found[0] if found else None
    return loop._default_executor


async def submit(loop, n):
    if hasattr(asyncio, "to_thread") and n % 2 == 0:
        return await asyncio.to_thread(render_export_sync, n)
    return await loop.run_in_executor(None, render_export_sync, n)


async def ticker():
    while True:
        await asyncio.sleep(0.01)


async def main():
    loop = asyncio.get_running_loop()
    loop.create_task(ticker())
    tasks = []
    history = []
    facts = truth.loop_facts(loop)

    def write(executor):
        workers = [{"name": t.name, "native_id": getattr(t, "native_id", None)} for t in list(executor._threads)]
        truth.write_truth({
            "healthy": HEALTHY,
            "max_workers": executor._max_workers,
            "workers": workers,
            "history": history,
            "submitted": len(tasks),
            "work_function": "render_export_sync",
            "thread_native_id": threading.get_native_id() if hasattr(threading, "get_native_id") else None,
            "loop_class": facts.get("loop_class"),
        })

    n = 0
    while True:
        if HEALTHY:
            await submit(loop, n)
            n += 1
            executor = executor_of(loop)
            history.append([time.monotonic(), executor._work_queue.qsize()])
            del history[:-50]
            write(executor)
            await asyncio.sleep(STEP)
            continue
        burst = INITIAL if n == 0 else (1 if n < MAX_ITEMS else 0)
        for _ in range(burst):
            tasks.append(loop.create_task(submit(loop, n)))
            n += 1
        # Let the tasks run their first step (each submits its work item) and, the first
        # time, the workers take their item: from then on only submissions change the queue.
        await asyncio.sleep(0)
        executor = executor_of(loop)
        deadline = time.monotonic() + 10
        while executor._work_queue.qsize() != n - executor._max_workers and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if burst:
            history.append([time.monotonic(), executor._work_queue.qsize()])
            write(executor)
        await asyncio.sleep(STEP)

if __name__ == "__main__":
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
