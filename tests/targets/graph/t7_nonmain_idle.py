import asyncio
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
import threading
import time

sock = graph_truth.Signal()
graph_truth.watchdog()

async def worker_main():
    task = asyncio.create_task(
        asyncio.sleep(10_000),
        name="worker task",
    )
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_soon(sock.sendall, b"ready")
    await task

def run_worker_loop():
    asyncio.run(worker_main())

threading.Thread(
    target=run_worker_loop,
    name="async-worker",
    daemon=True,
).start()
time.sleep(10_000)
