"""A service for `loopspy serve`'s tests: idle (a 10 ms ticker) until the file `go` appears
beside its truth file, then a known schedule of blocks, each timed with loop.time():

  3 x 300 ms of time.sleep in `slow_query`,
  2 x 250 ms of CPU work in a function whose name holds a double quote, a backslash and a
  newline (HOSTILE: what a label value must survive),

with 300 ms healthy gaps. It then writes `done.json` beside the truth file (the blocks, and
the number of tasks not done, which stays fixed from `go` on) and idles until killed.
Truth (at start): pid, thread, loop class, the two function names.
"""

import asyncio
import json
import os
import sys
import threading
import time
import types

import truth

HOSTILE = 'crunch "q" \\ x\ny'
GAP = 0.3


def renamed(fn, name):
    code = fn.__code__
    kw = {"co_name": name}
    if sys.version_info >= (3, 11):
        kw["co_qualname"] = name
    new = types.FunctionType(code.replace(**kw), fn.__globals__, name)
    new.__qualname__ = name
    return new


def slow_query():
    time.sleep(0.3)


def _crunch(loop):
    t0 = loop.time()
    x = 0
    while loop.time() - t0 < 0.25:
        for i in range(2000):
            x += i * i
    return x


crunch = renamed(_crunch, HOSTILE)


async def ticker():
    while True:
        await asyncio.sleep(0.01)


def timed(loop, function, name, blocks):
    t0 = loop.time()
    function()
    blocks.append({"function": name, "start": t0, "end": loop.time()})


async def main():
    loop = asyncio.get_running_loop()
    tick = loop.create_task(ticker())
    here = os.path.dirname(os.path.abspath(truth.truth_path()))
    truth.write_truth({
        "functions": ["slow_query", HOSTILE],
        "thread_native_id": threading.get_native_id(),
        "loop_class": "uvloop.Loop" if truth.is_uvloop(loop) else type(loop).__name__,
    })
    while not os.path.exists(os.path.join(here, "go")):
        await asyncio.sleep(0.02)
    blocks = []
    for function, name in [(slow_query, "slow_query"), (lambda: crunch(loop), HOSTILE)] * 2 + [(slow_query, "slow_query")]:
        await asyncio.sleep(GAP)
        timed(loop, function, name, blocks)
    await asyncio.sleep(GAP)
    done = {"blocks": blocks, "pending_tasks": len(asyncio.all_tasks(loop)), "now": loop.time()}
    tmp = os.path.join(here, "done.json.tmp")
    with open(tmp, "w") as f:
        json.dump(done, f)
    os.replace(tmp, os.path.join(here, "done.json"))
    await tick


if __name__ == "__main__":
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
