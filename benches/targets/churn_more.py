"""A benchmark target: tests/targets/churn.py (tasks by the thousand, threads and event loops
created and destroyed, the garbage collector running hard, fork and exec), plus what it does
not do: tasks cancelled, and timeouts that fire.

    python churn_more.py TRUTH.json [--uvloop] [--only PART,...]

Added on the main loop:

- wait_for storms: batches of 200 `asyncio.wait_for(...)` whose timeouts (1-10 ms) fire
  before what they wait for (a sleep, an Event, a Queue.get, a bare future) is done;
- cancellation: tasks cancelled mid-await, 2-4 coroutines deep, some of which clean up with
  an await in `finally` or swallow the first cancellation and await again; gathers cancelled
  as a whole; shielded tasks whose waiter is cancelled; on 3.11+, `asyncio.timeout()` blocks
  and TaskGroups whose failing child cancels its siblings;
- run_in_executor calls, some cancelled (a pool of worker threads for --all-threads).

Added in threads: loops that live about 0.2 s each and run a wait_for and cancellation storm
before they are closed (so loops with cancelled tasks come and go as well).

TRUTH.json and `--uvloop` as for churn.py (tests/targets/truth.py's convention); TRUTH.json is
written once everything runs. `--only` runs only the parts named (to tell which one makes looks
fail): on the main loop wait_for_storm, wait_for_serial, cancel_storm, cancelled_gathers,
timeouts_311, executor_churn, and churn.py's task_storm, garbage, fork_and_exec; in threads
cancel-loop-churn, and churn.py's loop-churn and thread-churn. Standard library only;
CPython 3.8+.
"""

import asyncio
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "targets"))

import churn  # noqa: E402
import truth  # noqa: E402


# ---- timeouts that fire ----------------------------------------------------------------------


async def never(kind, ev, q):
    if kind == 0:
        await asyncio.sleep(1)
    elif kind == 1:
        await ev.wait()
    elif kind == 2:
        await q.get()
    else:
        # its own future: the timeout cancels the task awaiting it, which cancels the future
        await asyncio.get_running_loop().create_future()


async def timed_out(i, ev, q):
    try:
        await asyncio.wait_for(never(i % 4, ev, q), timeout=(1 + i % 10) / 1000)
    except asyncio.TimeoutError:
        return 1
    return 0


async def wait_for_storm():
    loop = asyncio.get_running_loop()
    ev, q = asyncio.Event(), asyncio.Queue()
    while True:
        batch = [loop.create_task(timed_out(i, ev, q), name="wait_for-%d" % i) for i in range(200)]
        await asyncio.gather(*batch)
        await asyncio.sleep(0.01)


async def wait_for_serial():
    """One wait_for after another: the timeout handle and the inner task churn on each."""
    ev = asyncio.Event()
    while True:
        for i in range(50):
            try:
                await asyncio.wait_for(ev.wait(), timeout=0.001)
            except asyncio.TimeoutError:
                pass
        await asyncio.sleep(0.005)


# ---- tasks cancelled mid-await ---------------------------------------------------------------


async def inner(depth, ev, mode):
    if depth > 0:
        return await inner(depth - 1, ev, mode)
    try:
        await ev.wait()
    except asyncio.CancelledError:
        if mode == 1:
            await asyncio.sleep(0)  # cleanup that awaits, then re-raise
            raise
        if mode == 2:
            # swallow the first cancellation and wait again (it is cancelled once more)
            await asyncio.sleep(0.005)
            return "swallowed"
        raise
    finally:
        sum(i for i in range(50))


async def victim(i, ev):
    return await inner(2 + i % 3, ev, i % 3)


async def cancel_storm():
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    while True:
        ev = asyncio.Event()
        tasks = [loop.create_task(victim(i, ev), name="victim-%d" % i) for i in range(150)]
        await asyncio.sleep(rng.uniform(0.001, 0.01))
        for t in tasks:
            t.cancel()
        await asyncio.sleep(0)
        for t in tasks[::3]:
            t.cancel()  # again, for the ones that swallowed it
        await asyncio.wait(tasks, timeout=0.05)
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def cancelled_gathers():
    loop = asyncio.get_running_loop()
    while True:
        ev = asyncio.Event()
        g = asyncio.gather(*[victim(i, ev) for i in range(30)])
        await asyncio.sleep(0.002)
        g.cancel()
        try:
            await g
        except asyncio.CancelledError:
            pass
        # a shielded task outlives its cancelled waiter
        inner_task = loop.create_task(asyncio.sleep(0.003), name="shielded")
        waiter = loop.create_task(_shielded(inner_task), name="shield-waiter")
        await asyncio.sleep(0.001)
        waiter.cancel()
        await asyncio.gather(waiter, inner_task, return_exceptions=True)
        await asyncio.sleep(0.005)


async def _shielded(t):
    await asyncio.shield(t)


async def timeouts_311():
    """asyncio.timeout() and TaskGroup cancellation (3.11+)."""
    if not hasattr(asyncio, "timeout"):
        return

    async def boom():
        await asyncio.sleep(0.002)
        raise ValueError("boom")

    ev = asyncio.Event()
    while True:
        for _ in range(20):
            try:
                async with asyncio.timeout(0.002):
                    await victim(1, ev)
            except TimeoutError:
                pass
        try:
            async with asyncio.TaskGroup() as tg:
                for i in range(20):
                    tg.create_task(victim(i, ev))
                tg.create_task(boom())
        except BaseException:  # ExceptionGroup (3.11+)
            pass
        await asyncio.sleep(0.005)


def blocking_work(n):
    time.sleep(0.001 * (n % 5))
    return sum(i * i for i in range(2000))


async def executor_churn():
    loop = asyncio.get_running_loop()
    while True:
        futs = [loop.run_in_executor(None, blocking_work, i) for i in range(8)]
        for f in futs[::2]:
            f.cancel()
        await asyncio.gather(*futs, return_exceptions=True)
        await asyncio.sleep(0.01)


# ---- loops with cancellations, created and closed in threads --------------------------------


async def short_lived_loop_body():
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(timed_out(i, asyncio.Event(), asyncio.Queue())) for i in range(50)]
    ev = asyncio.Event()
    victims = [loop.create_task(victim(i, ev)) for i in range(50)]
    await asyncio.sleep(0.005)
    for t in victims:
        t.cancel()
    await asyncio.gather(*tasks, *victims, return_exceptions=True)
    await asyncio.sleep(0.2)


def cancelling_loops_coming_and_going():
    while not churn.STOP.is_set():
        loop = truth.new_loop()
        try:
            loop.run_until_complete(short_lived_loop_body())
        finally:
            loop.close()


COROUTINES = [wait_for_storm, wait_for_serial, cancel_storm, cancelled_gathers, timeouts_311, executor_churn]
CHURN_COROUTINES = [churn.task_storm, churn.garbage, churn.fork_and_exec]
THREADS = {
    "cancel-loop-churn": cancelling_loops_coming_and_going,
    "loop-churn": churn.loops_coming_and_going,
    "thread-churn": churn.threads_coming_and_going,
}


def only():
    if "--only" not in sys.argv:
        return None
    parts = set(sys.argv[sys.argv.index("--only") + 1].split(","))
    known = {f.__name__ for f in COROUTINES + CHURN_COROUTINES} | set(THREADS)
    if parts - known:
        sys.exit("--only: unknown %s (known: %s)" % (", ".join(sorted(parts - known)), ", ".join(sorted(known))))
    return parts


async def main():
    loop = asyncio.get_running_loop()
    parts = only()
    if parts is None:
        for f in COROUTINES:
            loop.create_task(f())
        threading.Thread(target=cancelling_loops_coming_and_going, name="cancel-loop-churn", daemon=True).start()
        await churn.main()  # starts churn.py's own work, writes TRUTH.json, waits forever
        return
    for f in COROUTINES + CHURN_COROUTINES:
        if f.__name__ in parts:
            loop.create_task(f())
    for name, f in THREADS.items():
        if name in parts:
            threading.Thread(target=f, name=name, daemon=True).start()
    truth.write_truth({"parts": sorted(parts)})
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.version_info >= (3, 12):
        import warnings

        warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a threaded process
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
