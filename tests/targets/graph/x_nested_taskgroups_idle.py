import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def leaf():
    await asyncio.sleep(3600)

async def outer_child():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(leaf(), name="leaf-1")
        tg.create_task(leaf(), name="leaf-2")

async def main():
    asyncio.get_running_loop().call_later(0.1, sock.sendall, b"ready")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(outer_child(), name="outer-child")
        tg.create_task(leaf(), name="sibling")

asyncio.run(main())
