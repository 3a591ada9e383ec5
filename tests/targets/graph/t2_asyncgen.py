import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

async def gen_nested_call():
    sock.sendall(b"ready"); time.sleep(10_000)  # same line number

async def gen():
    for num in range(2):
        yield num
        if num == 1:
            await gen_nested_call()

async def main():
    async for el in gen():
        pass

asyncio.run(main())
