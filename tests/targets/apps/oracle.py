"""What a real app under test measures about itself, nobody else's code involved but asyncio's:

- asyncio's own debug mode (PYTHONASYNCIODEBUG=1, set by the test) logs every callback slower
  than `loop.slow_callback_duration` ("Executing <Handle ...> took 0.412 seconds"); each record
  is written as a JSON line stamped with time.monotonic() (the clock of loop.time()) when it
  is logged, right after the callback returned;
- a 10 ms heartbeat timer records how late it fires.

`start(loop, out_dir)` installs both; the app calls it once its loop runs. Files in out_dir:
  slow.jsonl      {"end": monotonic, "took": seconds, "what": the handle's repr}
  heartbeat.jsonl {"due": when, "ran": loop.time()} (only late ones, > 2 ms)
  served.jsonl    {"endpoint", "task", "t"}: which task served which blocking endpoint, when
                  (time.monotonic() as it started: the clock of slow.jsonl's stamps, to the
                  nanosecond; uvloop's loop.time() is whole milliseconds of libuv's clock)
  port            the port the app listens on (written by the app)
"""

import asyncio
import json
import logging
import os
import re
import time

SLOW = 0.05  # log callbacks from 50 ms: the test's threshold is 100 ms
TOOK = re.compile(r"^Executing (?P<what>.*) took (?P<took>[0-9.]+) seconds$", re.S)


class SlowCallbacks(logging.Handler):
    def __init__(self, path):
        super().__init__()
        self.out = open(path, "a", buffering=1)

    def emit(self, record):
        now = time.monotonic()
        try:
            m = TOOK.match(record.getMessage())
        except Exception:
            return
        if m:
            self.out.write(json.dumps({"end": now, "took": float(m.group("took")), "what": m.group("what")[:300]}) + "\n")


def start(loop, out_dir):
    global OUT_DIR
    OUT_DIR = out_dir
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW
    log = logging.getLogger("asyncio")
    log.addHandler(SlowCallbacks(os.path.join(out_dir, "slow.jsonl")))
    log.setLevel(logging.WARNING)
    log.propagate = False
    beats = open(os.path.join(out_dir, "heartbeat.jsonl"), "a", buffering=1)

    def beat(when):
        ran = loop.time()
        if ran - when > 0.002:
            beats.write(json.dumps({"due": when, "ran": ran}) + "\n")
        nxt = ran + 0.010
        loop.call_at(nxt, beat, nxt)

    first = loop.time() + 0.010
    loop.call_at(first, beat, first)


OUT_DIR = None


def served(endpoint):
    """Note which task serves a blocking endpoint (called first thing in the endpoint)."""
    task = asyncio.current_task()
    with open(os.path.join(OUT_DIR, "served.jsonl"), "a") as f:
        t = time.monotonic()
        f.write(json.dumps({"endpoint": endpoint, "task": task.get_name() if task else None, "t": t}) + "\n")


def write_port(out_dir, port):
    tmp = os.path.join(out_dir, "port.tmp")
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, os.path.join(out_dir, "port"))
