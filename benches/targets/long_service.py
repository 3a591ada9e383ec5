"""A service for long-run memory benchmarks (benches/long_run.py): requests arrive about 200
times a second, each a task of its own with asyncio's default name (Task-N: a new name every
time), awaiting a short sleep; about 3 times a second one of them blocks the loop 100-160 ms
in a synchronous sleep (a different line each time from a handful); a background task
refreshes a cache with a comprehension now and then. Runs until killed.
"""

import asyncio
import random
import time


def blocking_lookup(i):
    if i % 3 == 0:
        time.sleep(0.10)
    elif i % 3 == 1:
        time.sleep(0.13)
    else:
        time.sleep(0.16)


async def request(i):
    await asyncio.sleep(random.uniform(0.001, 0.02))
    if i % 67 == 0:
        blocking_lookup(i // 67)
    return i


async def refresher():
    while True:
        await asyncio.sleep(1.0)
        _ = {k: [j * j for j in range(50)] for k in range(200)}


async def main():
    asyncio.get_running_loop().create_task(refresher())
    i = 0
    pending = set()
    while True:
        await asyncio.sleep(0.005)
        t = asyncio.ensure_future(request(i))
        pending.add(t)
        t.add_done_callback(pending.discard)
        i += 1


asyncio.run(main())
