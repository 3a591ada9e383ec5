import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def a2(fut):
    await fut

async def a1(fut):
    await a2(fut)

async def b1(fut):
    await fut

async def main():
    fut = asyncio.Future()
    async with asyncio.TaskGroup() as g:
        g.create_task(a1(fut), name="task A")
        g.create_task(b1(fut), name='task B')

        for _ in range(5):
            await asyncio.sleep(0)

        sock.sendall(b"ready"); time.sleep(10_000)
        fut.set_result(None)

asyncio.run(main())
