import asyncio
import time
import sys
import graph_truth  # the async generator cases of CPython's test_external_inspection (gh-159620), idle
# Tasks whose await chains go through async generators, and tasks whose coroutine is an asend/athrow step.
sock = graph_truth.Signal()
graph_truth.watchdog()

async def agen():
    await asyncio.sleep(3600)
    yield

async def agen_with_cleanup():
    try:
        yield
    finally:
        await asyncio.sleep(3600)

async def outer_agen():
    async for _ in agen():
        yield

async def consumer(gen):
    async for _ in gen:
        pass

async def main():
    g = agen_with_cleanup()
    await anext(g)
    asyncio.create_task(consumer(agen()), name="async for")
    asyncio.create_task(consumer(outer_agen()), name="nested async for")
    asyncio.create_task(anext(agen()), name="anext")
    asyncio.create_task(g.aclose(), name="aclose")
    asyncio.get_running_loop().call_later(0.1, sock.sendall, b"ready")
    await asyncio.sleep(3600)

asyncio.run(main())
