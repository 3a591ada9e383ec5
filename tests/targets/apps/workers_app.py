"""A plain ASGI app for worker fleets (`gunicorn -k uvicorn.workers.UvicornWorker -w 3`,
`uvicorn --workers 3`): every worker blocks its own event loop on a known schedule and writes
what it measured, the truth tests/subprocesses.rs holds loopspy's episodes against.

Directory for the truth: $LOOPSPY_TRUTH_DIR. Per worker (PID):
  ready-PID            written once its loop runs (the lifespan started)
  blocks-PID.jsonl     one line per block: {"start", "end"} in CLOCK_MONOTONIC seconds (the
                       clock of loop.time() and of loopspy's episodes), measured around the
                       blocking call, and "ms", the block asked for

The blocking step is `blocking_step` (a sync sleep in a task, as a handler calling a blocking
client does). A truth line is written in the next step of the task, a short callback of its
own, so the write is not part of the block.
"""

import asyncio
import json
import os
import time

OUT = os.environ["LOOPSPY_TRUTH_DIR"]
SCHEDULE_MS = (150, 320, 220)
IDLE_S = 0.45

_tasks = set()


def blocking_step(ms):
    time.sleep(ms / 1000.0)


async def blocker():
    pid = os.getpid()
    path = os.path.join(OUT, "blocks-%d.jsonl" % pid)
    with open(os.path.join(OUT, "ready-%d" % pid), "w") as f:
        f.write(str(time.monotonic()))
    i = 0
    while True:
        await asyncio.sleep(IDLE_S)
        ms = SCHEDULE_MS[i % len(SCHEDULE_MS)]
        i += 1
        start = time.monotonic()
        blocking_step(ms)
        end = time.monotonic()
        await asyncio.sleep(0)
        with open(path, "a") as f:
            f.write(json.dumps({"start": start, "end": end, "ms": ms}) + "\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                task = asyncio.ensure_future(blocker())
                _tasks.add(task)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok\n"})
