import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

def block():
    sock.sendall(b"ready"); time.sleep(10_000)

async def worker(cleanup):
    try:
        await asyncio.Future()
    finally:
        await cleanup

async def probe(t):
    await asyncio.wait_for(t, 0)

async def main():
    cleanup = asyncio.Future()
    t = asyncio.ensure_future(worker(cleanup))          # Task-2
    p = asyncio.create_task(probe(t), name='probe')
    for _ in range(5):
        await asyncio.sleep(0)
    block()

asyncio.run(main())
