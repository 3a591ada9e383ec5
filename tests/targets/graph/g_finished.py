import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def boom():
    raise ValueError

async def main():
    done = asyncio.create_task(asyncio.sleep(0), name='done')
    failed = asyncio.create_task(boom(), name='failed')
    cancelled = asyncio.create_task(asyncio.Event().wait(), name='cancelled')
    cancelled.cancel()
    await asyncio.gather(done, failed, cancelled, return_exceptions=True)
    sock.sendall(b"ready"); time.sleep(10_000)

asyncio.run(main())
