"""A loop whose callbacks are stopped by the cyclic garbage collector, and which times every
collection itself.

Automatic collection is off (so that only the collections below happen); a heap of
self-referencing lists lives for the whole run and grows, so that full collections get
longer, as in a service that keeps more and more long-lived containers. After START_DELAY
seconds a driver task runs ROUNDS, separated by healthy gaps:
  generation 2: `gc.collect(2)` in `collect_full` over the whole heap;
  generation 0 or 1: `build_young` makes YOUNG cyclic garbage lists in one task step
  (collection off: no pause there), and a later step, `collect_young`, collects them with
  `gc.collect(0)` / `gc.collect(1)`.
The heap sizes come from timing one full collection at startup, so that pauses last about
PAUSE_MS whatever the interpreter's speed.

With `--forever`, full collections run back to back instead (for `dump`).

Every collection is timed by `gc.callbacks` ("start"/"stop", with its generation) in
time.monotonic() seconds (the clock loopspy's samples and loop.time() use). Ground truth,
written once the rounds are done: pauses [{start, end, generation}], builds [{start, end}]
(callbacks that allocate without collecting), written_at; then the program ends.
"""

import asyncio
import gc
import sys
import time

import truth

START_DELAY = 0.5
GAP = 0.15
# (generation, pause in ms) per round; the full collections grow with the heap.
ROUNDS = [(2, 100), (0, 110), (2, 140), (1, 110), (2, 190)]
# Objects timed at startup for the collector's speed.
CALIBRATE = 100000
MAX_OBJECTS = 2500000

pauses = []
builds = []
started = [None]
heap = []


def on_gc(phase, info):
    now = time.monotonic()
    if phase == "start":
        started[0] = (now, info["generation"])
    elif started[0] is not None:
        t0, generation = started[0]
        pauses.append({"start": t0, "end": now, "generation": generation})
        started[0] = None


def cycles(n):
    out = []
    for _ in range(n):
        a = []
        a.append(a)
        out.append(a)
    return out


def seconds_per_object():
    """How long a collection takes per container here: walking survivors (a full
    collection of a live heap), and freeing garbage (a young collection of dead cycles)."""
    sample = cycles(CALIBRATE)
    gc.collect()
    t0 = time.perf_counter()
    gc.collect()
    live = time.perf_counter() - t0
    del sample
    gc.collect()
    cycles(CALIBRATE)
    t0 = time.perf_counter()
    gc.collect(0)
    dead = time.perf_counter() - t0
    return max(live / CALIBRATE, 1e-8), max(dead / CALIBRATE, 1e-8)


def grow_heap(size):
    if len(heap) < size:
        heap.extend(cycles(size - len(heap)))


def collect_full():
    gc.collect(2)


def build_young(n):
    t0 = time.monotonic()
    # Dropped at once: n self-referencing lists, garbage only the collector can free (and
    # the collect step below does nothing else).
    cycles(n)
    builds.append({"start": t0, "end": time.monotonic()})


def collect_young(generation):
    gc.collect(generation)


async def driver(per_object):
    live, dead = per_object
    await asyncio.sleep(START_DELAY)
    for generation, ms in ROUNDS:
        if generation == 2:
            grow_heap(min(int(ms / 1e3 / live), MAX_OBJECTS))
            await asyncio.sleep(GAP)
            collect_full()
        else:
            build_young(min(int(ms / 1e3 / dead), MAX_OBJECTS))
            await asyncio.sleep(GAP / 2)
            collect_young(generation)
        await asyncio.sleep(GAP)
    truth.write_truth({"pauses": pauses, "builds": builds, "written_at": time.monotonic(), "heap": len(heap)})
    # A little idle time after the last pause, then the end: a recording of this program
    # ends with it.
    await asyncio.sleep(GAP)


async def ticker():
    while True:
        await asyncio.sleep(0.01)


async def collect_forever(per_object):
    """`--forever` (for `dump`): full collections of about 100 ms back to back, 5 ms apart;
    the truth is the share of time spent collecting, measured over half a second."""
    grow_heap(min(int(0.1 / per_object[0]), MAX_OBJECTS))
    written = False
    t0 = time.monotonic()
    while True:
        collect_full()
        await asyncio.sleep(0.005)
        if not written and time.monotonic() - t0 > 0.5:
            span = time.monotonic() - t0
            spent = sum(p["end"] - max(p["start"], t0) for p in pauses if p["end"] > t0)
            truth.write_truth({"collecting_share": spent / span, "generation": 2, "pauses": len(pauses)})
            written = True


async def main(per_object):
    asyncio.get_running_loop().create_task(ticker())
    if "--forever" in sys.argv:
        await collect_forever(per_object)
    await driver(per_object)


if __name__ == "__main__":
    gc.disable()
    per_object = seconds_per_object()
    gc.callbacks.append(on_gc)
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main(per_object))
