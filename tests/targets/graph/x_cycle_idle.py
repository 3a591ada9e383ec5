import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def cycle(other):
    await asyncio.sleep(0)
    await other[0]

async def main():
    loop = asyncio.get_running_loop()
    a_ref, b_ref = [None], [None]
    a_ref[0] = loop.create_task(cycle(b_ref), name="cycle-a")
    b_ref[0] = loop.create_task(cycle(a_ref), name="cycle-b")
    loop.call_later(0.1, sock.sendall, b"ready")
    await asyncio.sleep(3600)

asyncio.run(main())
