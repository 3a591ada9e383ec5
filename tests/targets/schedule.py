"""A loop that runs a known schedule of blocks, and measures itself.

After START_DELAY seconds, a driver task runs, separated by healthy gaps:
  4 x 250 ms of time.sleep in `sleepy` (waiting: clock_nanosleep, or pselect6 before 3.11),
  3 x 400 ms of pure-Python CPU work in `cpu_burn` (on CPU),
and before one of the sleeps it queues a burst of exactly BURST no-op callbacks, which stay
in the ready queue while the loop is blocked.

Meanwhile: a 10 ms heartbeat timer records how late it fires (the loop lag), and two healthy
tasks tick. Ground truth written at the end (JSON, loop.time() seconds):
  blocks: [{function, kind: "sleep"|"cpu", start, end}]
  heartbeat: max lateness; busy: intervals outside select (stock loop: the selector's
  select is wrapped) or of our own callbacks (uvloop); ready_burst: len(ready) while blocked;
  timers_due_after_burst: timers due when that block ended, which may join the burst in the
  ready queue for the moment before the loop runs it;
  runqueue: [(loop.time(), seconds this thread has waited for a CPU so far)] every 50 ms,
  from /proc/thread-self/schedstat (empty where the kernel keeps no statistics): time the
  loop was runnable but not running, which a sampler rightly sees as busy (not in epoll)
  although no callback of ours ran.
"""

import asyncio
import time

import truth

START_DELAY = 0.6
GAP = 0.3
BURST = 25

blocks = []
heartbeat_late = []
select_intervals = []
callback_intervals = []
runqueue = []
ready_burst = [None]
timers_due = [None]


def sleepy(loop):
    t0 = loop.time()
    time.sleep(0.25)
    blocks.append({"function": "sleepy", "kind": "sleep", "start": t0, "end": loop.time()})


def cpu_burn(loop):
    t0 = loop.time()
    x = 0
    while loop.time() - t0 < 0.40:
        for i in range(2000):
            x += i * i
    blocks.append({"function": "cpu_burn", "kind": "cpu", "start": t0, "end": loop.time()})
    return x


def runqueue_wait():
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def heartbeat(loop, when):
    heartbeat_late.append(loop.time() - when)
    if len(heartbeat_late) % 5 == 0:
        wait = runqueue_wait()
        if wait is not None:
            runqueue.append((loop.time(), wait))
    nxt = loop.time() + 0.010
    loop.call_at(nxt, heartbeat, loop, nxt)


async def healthy(loop, period):
    while True:
        t0 = loop.time()
        sum(range(100))
        callback_intervals.append((t0, loop.time()))
        await asyncio.sleep(period)


def noop():
    pass


async def driver(loop):
    await asyncio.sleep(START_DELAY)
    steps = ["sleep", "cpu", "sleep", "cpu", "burst+sleep", "cpu", "sleep"]
    for step in steps:
        if step == "burst+sleep":
            for _ in range(BURST):
                loop.call_soon(noop)
            ready_burst[0] = truth.loop_facts(loop)["ready"]
        if step.endswith("sleep"):
            sleepy(loop)
            if step == "burst+sleep":
                timers_due[0] = truth.due_timers(loop)
        else:
            cpu_burn(loop)
        await asyncio.sleep(GAP)
    facts = truth.loop_facts(loop)
    facts.update(
        blocks=blocks,
        heartbeat_max_late=max(heartbeat_late),
        heartbeat_count=len(heartbeat_late),
        select_intervals=select_intervals,
        callback_intervals=callback_intervals + [(b["start"], b["end"]) for b in blocks],
        ready_burst=ready_burst[0],
        timers_due_after_burst=timers_due[0],
        runqueue=runqueue,
        task="driver",
        # The intervals above stop here: compare busy time only up to this moment.
        written_at=loop.time(),
    )
    truth.write_truth(facts)


def wrap_select(loop):
    """Record every interval the stock loop spends in its selector's select()."""
    selector = loop._selector
    inner = selector.select

    def select(timeout=None):
        t0 = time.monotonic()
        try:
            return inner(timeout)
        finally:
            select_intervals.append((t0, time.monotonic()))

    selector.select = select


async def main():
    loop = asyncio.get_running_loop()
    if not truth.is_uvloop(loop):
        wrap_select(loop)
    now = loop.time() + 0.010
    loop.call_at(now, heartbeat, loop, now)
    for period in (0.007, 0.013):
        loop.create_task(healthy(loop, period))
    await loop.create_task(driver(loop), name="driver")
    await asyncio.Event().wait()


if __name__ == "__main__":
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
