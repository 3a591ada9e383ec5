import asyncio
import time
import sys
import graph_truth  # the running-task cases of CPython's async generator tests (gh-159620)
# The running task's coroutine is an asend step: its chain ends at the async generator's frame.
sock = graph_truth.Signal()
graph_truth.watchdog()

def block():
    sock.sendall(b"ready"); time.sleep(10_000)

async def agen3():
    await asyncio.sleep(0)
    block()
    yield

async def main3():
    return await asyncio.create_task(anext(agen3()), name="anext")

asyncio.run(main3())
