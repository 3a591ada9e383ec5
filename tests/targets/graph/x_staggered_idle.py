import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def c1():
    await asyncio.sleep(3600)

async def c2():
    await asyncio.sleep(3600)

async def main():
    asyncio.get_running_loop().call_later(0.1, sock.sendall, b"ready")
    await asyncio.staggered.staggered_race([c1, c2], delay=0.01)

import asyncio.staggered
asyncio.run(main())
