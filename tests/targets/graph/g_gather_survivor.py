import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

def block():
    sock.sendall(b"ready"); time.sleep(10_000)

async def fail():
    raise ValueError

async def survivor():
    await asyncio.Future()

async def main():
    t = asyncio.create_task(survivor(), name='survivor')
    try:
        await asyncio.gather(t, fail())
    except ValueError:
        pass
    block()

asyncio.run(main())
