import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def nap():
    await asyncio.sleep(3600)

async def sleeper():
    await nap()

async def waiter(t):
    await t

async def timed(t):
    await asyncio.wait_for(t, 3600)

async def worker(q):
    return await q.get()

async def parent(ws):
    await asyncio.gather(*ws)

async def main():
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    ws = [loop.create_task(worker(q), name=f"worker-{i}") for i in (1, 2, 3)]
    loop.create_task(parent(ws), name="parent")
    s = loop.create_task(sleeper(), name="sleeper")
    loop.create_task(waiter(s), name="waiter")
    s2 = loop.create_task(sleeper(), name="sleeper-2")
    loop.create_task(timed(s2), name="timed")
    loop.call_later(0.1, sock.sendall, b"ready")
    await asyncio.sleep(3600)

asyncio.run(main())
