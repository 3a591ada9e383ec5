"""A target that changes under loopspy's feet: tasks by the thousand, threads starting and
ending, event loops created and closed in another thread, the garbage collector running hard,
and the process forking and exec'ing. For the reliability suite: loopspy must keep sampling,
count torn reads, never show garbage and never panic."""

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time

import truth

STOP = threading.Event()


async def short(n):
    await asyncio.sleep((n % 20) / 1000)
    return sum(range(n % 100))


async def task_storm():
    loop = asyncio.get_running_loop()
    while True:
        batch = [loop.create_task(short(i), name="storm-%d" % i) for i in range(300)]
        await asyncio.gather(*batch)
        await asyncio.sleep(0.02)


async def garbage():
    while True:
        for _ in range(2000):
            a, b = [], []
            a.append(b)
            b.append(a)  # reference cycles for the collector
        gc.collect()
        await asyncio.sleep(0.05)


async def fork_and_exec():
    while True:
        subprocess.run(["true"])
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        await asyncio.sleep(0.3)


def loops_coming_and_going():
    while not STOP.is_set():
        loop = truth.new_loop()
        loop.run_until_complete(asyncio.sleep(0.03))
        loop.close()


def threads_coming_and_going():
    while not STOP.is_set():
        t = threading.Thread(target=time.sleep, args=(0.02,), name="short-lived")
        t.start()
        t.join()


async def main():
    loop = asyncio.get_running_loop()
    for coro in (task_storm(), garbage(), fork_and_exec()):
        loop.create_task(coro)
    threading.Thread(target=loops_coming_and_going, name="loop-churn", daemon=True).start()
    threading.Thread(target=threads_coming_and_going, name="thread-churn", daemon=True).start()
    truth.write_truth({"functions": ["short", "task_storm", "garbage", "fork_and_exec", "main"]})
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.version_info >= (3, 12):
        import warnings

        warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a threaded process
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
