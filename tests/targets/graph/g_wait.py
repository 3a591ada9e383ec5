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

async def c1():
    async with asyncio.timeout(1):
        await asyncio.sleep(0)
        await inner()

async def c2():
    for i in range(3):
        await asyncio.sleep(0)

async def main(t1, t2):
    while True:
        _, pending = await asyncio.wait([t1, t2])
        if not pending:
            break

async def test():
    t1 = asyncio.create_task(c1())
    t2 = asyncio.create_task(c2())
    try:
        await main(t1, t2)
    finally:
        await t1
        await t2

asyncio.run(test())
