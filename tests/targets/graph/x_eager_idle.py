import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def leaf():
    await asyncio.sleep(3600)

async def child():
    await asyncio.create_task(leaf(), name="grandchild")

async def main():
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)
    t = asyncio.create_task(child(), name="eager-child")   # runs eagerly up to its first await
    loop.call_later(0.1, sock.sendall, b"ready")
    await t

asyncio.run(main())
