import asyncio
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
import threading
import time

sock = graph_truth.Signal()
graph_truth.watchdog()

def blocking_call():
    sock.sendall(f"ready:{threading.get_native_id()}\n".encode()); time.sleep(10_000)
    # (one line: the truth is read where the task blocks)

async def worker_task():
    await asyncio.sleep(0)
    blocking_call()

async def worker_main():
    task = asyncio.create_task(
        worker_task(),
        name="worker task",
    )
    await task

def run_worker_loop():
    asyncio.run(worker_main())

threading.Thread(
    target=run_worker_loop,
    name="async-worker",
    daemon=True,
).start()
time.sleep(10_000)
