import asyncio
import time
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
# Ported from CPython's remote task inspection tests; the truth is written at "ready".
sock = graph_truth.Signal()
graph_truth.watchdog()

def c5():
    sock.sendall(b"ready"); time.sleep(10_000)  # same line number

async def c4():
    await asyncio.sleep(0)
    c5()

async def c3():
    await c4()

async def c2():
    await c3()

async def c1(task):
    await task

async def main():
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(c2(), name="c2_root")
        tg.create_task(c1(task), name="sub_main_1")
        tg.create_task(c1(task), name="sub_main_2")

def new_eager_loop():
    loop = asyncio.new_event_loop()
    eager_task_factory = asyncio.create_eager_task_factory(
        asyncio.Task)
    loop.set_task_factory(eager_task_factory)
    return loop

if graph_truth.VARIANT == "eager":
    asyncio.run(main(), loop_factory=new_eager_loop)
else:
    asyncio.run(main())
