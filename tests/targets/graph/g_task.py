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
    await inner()

async def c2():
    await asyncio.create_task(c1(), name='there there')

async def main():
    await c2()

asyncio.run(main())
