import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def inner():
    await asyncio.sleep(0)
    sock.sendall(b"ready"); time.sleep(10_000)

async def main(t):
    for f in asyncio.as_completed([t]):
        await f

async def test():
    t = asyncio.create_task(inner(), name='inner')
    await main(t)

asyncio.run(test())
