"""N pending tasks (default 50,000), each waiting on an event that is never set; with
--grow, instead, a batch of 10 new pending tasks every 100 ms, logging the count.

Truth: the exact number of pending tasks of the loop (all_tasks), and with --grow the log of
(loop.time(), pending) after each batch."""

import asyncio
import sys

import truth


async def wait_forever(event):
    await event.wait()


async def main():
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    keep = []
    if "--grow" in sys.argv:
        log = []
        truth.write_truth({"log": log, "growing": True})
        for _ in range(1000):
            for _ in range(10):
                keep.append(loop.create_task(wait_forever(event)))
            await asyncio.sleep(0)  # let them start
            log.append((loop.time(), len([t for t in asyncio.all_tasks(loop) if not t.done()])))
            truth.write_truth({"log": log, "growing": True})
            await asyncio.sleep(0.1)
    n = int(sys.argv[sys.argv.index("--tasks") + 1]) if "--tasks" in sys.argv else 50_000
    for _ in range(n):
        keep.append(loop.create_task(wait_forever(event)))
    await asyncio.sleep(0.2)
    pending = len([t for t in asyncio.all_tasks(loop) if not t.done()])
    truth.write_truth({"pending": pending, "created": n})
    await event.wait()


if __name__ == "__main__":
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(loop.create_task(main(), name="main"))
