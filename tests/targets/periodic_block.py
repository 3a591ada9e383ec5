"""A service that blocks its loop in `slow_query` (time.sleep 300 ms) about every second, with
healthy ticking tasks in between. For the dashboard tests."""

import asyncio
import threading
import time

import truth


def slow_query():
    time.sleep(0.3)


async def handler():
    while True:
        await asyncio.sleep(0.7)
        slow_query()


async def ticker():
    while True:
        await asyncio.sleep(0.01)


async def main():
    loop = asyncio.get_running_loop()
    loop.create_task(ticker())
    handler_task = loop.create_task(handler(), name="request-handler")
    truth.write_truth({
        "blocking_function": "slow_query",
        "block_ms": 300,
        "task": "request-handler",
        "thread_native_id": threading.get_native_id(),
        "thread_name": threading.current_thread().name,
        "loop_class": "uvloop.Loop" if truth.is_uvloop(loop) else type(loop).__name__,
    })
    await handler_task


if __name__ == "__main__":
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
