"""A task leak: every 10 ms, 3 new tasks of `handle_request`, each waiting in `async with
sem` on one asyncio.Semaphore whose only permit a `holder` task took and never gives back
(about 300 tasks a second, none ever finishing); beside them a flat group of 40 `consume`
tasks waiting on one asyncio.Queue nobody feeds.

With --healthy, instead: as many tasks a second, each finishing within a few ms (the pending
count stays flat), and the same 40 queue consumers.

Truth, rewritten every 100 ms: the semaphore's and the queue's addresses (id()), the line
where a leaked task is suspended (from its own stack), and a log of
(loop.time(), created, pending, waiting on the semaphore, waiting on the queue), the last
two counted from the semaphore's and the queue's own waiter lists."""

import asyncio
import sys

import truth

PER_TICK = 3
TICK = 0.01
QUEUE_WAITERS = 40


async def handle_request(sem, i):
    async with sem:  # never admitted: the holder keeps the only permit
        await asyncio.sleep(0)


async def short_job(i):
    await asyncio.sleep((i % 5) / 1000)


async def hold(sem, forever):
    await sem.acquire()
    await forever.wait()


async def consume(queue):
    await queue.get()


def waiters(obj, attr):
    w = getattr(obj, attr, None)
    return len(w) if w else 0


async def main():
    loop = asyncio.get_running_loop()
    healthy = "--healthy" in sys.argv
    forever = asyncio.Event()
    sem = asyncio.Semaphore(1)
    queue = asyncio.Queue()
    keep = [loop.create_task(hold(sem, forever))]
    keep += [loop.create_task(consume(queue)) for _ in range(QUEUE_WAITERS)]
    await asyncio.sleep(0.05)
    created = 0
    log = []
    line = None
    next_log = loop.time()
    while True:
        for _ in range(PER_TICK):
            if healthy:
                loop.create_task(short_job(created))
            else:
                keep.append(loop.create_task(handle_request(sem, created)))
            created += 1
        await asyncio.sleep(TICK)
        if line is None and not healthy:
            line = keep[-1].get_stack()[-1].f_lineno
        if loop.time() >= next_log:
            next_log += 0.1
            pending = sum(1 for t in asyncio.all_tasks(loop) if not t.done())
            log.append((loop.time(), created, pending, waiters(sem, "_waiters"), waiters(queue, "_getters")))
            del log[:-400]
            if len(log) % 5:
                continue  # the log every 100 ms, the file every 500 ms
            truth.write_truth(
                {
                    "healthy": healthy,
                    "per_s": PER_TICK / TICK,
                    "semaphore": hex(id(sem)),
                    "queue": hex(id(queue)),
                    "queue_waiters": QUEUE_WAITERS,
                    "leak_line": line,
                    "log": log,
                }
            )


if __name__ == "__main__":
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(loop.create_task(main(), name="main"))
