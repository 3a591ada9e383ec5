"""loopspy's demo: a small asyncio service that is mostly healthy and now and then blocks
its own event loop, the way real services do.

Healthy parts: an HTTP-ish TCP server on 127.0.0.1 (a random free port), a client that
sends it requests, a pool of workers draining a queue, and a 10 ms heartbeat timer.

Unhealthy parts, each a few times a minute, inside the request handler:
  - a synchronous sleep (a blocking DB driver, `time.sleep`),
  - a big `json.loads` (CPU-bound work on the loop),
  - synchronous file I/O (writing and fsync-ing a file from a coroutine).

Run it:            python3 examples/demo_app.py
Look at it:        loopspy top --pid $(pgrep -f demo_app.py)   (or just: loopspy demo)
Options:           --uvloop (run on uvloop if it is installed), --seconds N (stop after N s)

Standard library only; CPython 3.8+.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time

BIG_JSON = json.dumps([{"id": i, "name": "user-%d" % i, "tags": ["a", "b", "c"], "score": i * 0.5}
                       for i in range(60_000)])


def fetch_user_sync(user_id):
    """Pretend to be a synchronous database driver: the loop waits with it."""
    time.sleep(0.25 + random.random() * 0.15)
    return {"id": user_id}


def parse_report(payload):
    """CPU-bound work done on the event loop."""
    return len(json.loads(payload))


def write_audit_log(line):
    """Synchronous file I/O from a coroutine."""
    with tempfile.NamedTemporaryFile("w", delete=True) as f:
        for _ in range(2000):
            f.write(line)
        f.flush()
        os.fsync(f.fileno())


async def handle_request(reader, writer):
    line = await reader.readline()
    kind = line.decode().strip()
    if kind == "user":
        body = json.dumps(fetch_user_sync(42))
    elif kind == "report":
        body = str(parse_report(BIG_JSON))
    elif kind == "audit":
        write_audit_log("audit entry\n" * 20)
        body = "ok"
    else:
        await asyncio.sleep(0.002)  # a well-behaved handler
        body = "hello"
    writer.write(body.encode() + b"\n")
    await writer.drain()
    writer.close()


async def client(port, stop):
    kinds = ["hello"] * 40 + ["user", "report", "audit"]
    while not stop.is_set():
        kind = random.choice(kinds)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(kind.encode() + b"\n")
            await writer.drain()
            await reader.readline()
            writer.close()
        except OSError:
            pass
        await asyncio.sleep(0.05)


async def worker(name, queue):
    while True:
        item = await queue.get()
        await asyncio.sleep(0.001 * item)
        queue.task_done()


async def producer(queue, stop):
    while not stop.is_set():
        for _ in range(5):
            queue.put_nowait(random.randint(1, 5))
        await asyncio.sleep(0.02)


async def heartbeat(stop):
    while not stop.is_set():
        await asyncio.sleep(0.01)


async def main(seconds):
    stop = asyncio.Event()
    server = await asyncio.start_server(handle_request, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    queue = asyncio.Queue()
    tasks = [asyncio.ensure_future(worker("worker-%d" % i, queue)) for i in range(4)]
    tasks.append(asyncio.ensure_future(producer(queue, stop)))
    tasks.append(asyncio.ensure_future(heartbeat(stop)))
    tasks.append(asyncio.ensure_future(client(port, stop)))
    print("demo_app: pid %d, serving on 127.0.0.1:%d" % (os.getpid(), port), file=sys.stderr, flush=True)
    try:
        if seconds:
            await asyncio.sleep(seconds)
        else:
            await asyncio.Event().wait()
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this many seconds")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    try:
        asyncio.run(main(args.seconds))
    except KeyboardInterrupt:
        pass
