"""Everyday code that blocks an event loop, one pattern after another, measured in-process.

Each pattern runs as one plain callback (`loop.call_soon`), except `block_coroutine`, a task
step of an `async def` that runs without awaiting. Each blocks the loop about BLOCK seconds,
separated by GAP seconds of healthy loop. Meanwhile a 10 ms heartbeat timer measures how late
timers fire (the loop's own jitter outside the blocks) and two small tasks tick.

Patterns (function: what it does; the kind of wait the sampler must see):
  block_cpu_loop      a plain Python loop                                   on CPU
  block_genexpr       sum() over a generator expression                     on CPU
  block_listcomp      list comprehensions                                   on CPU
  block_sorted        sorted(key=lambda ...)                                on CPU
  block_json          json.loads of a 5 MB document, again for 0.4 s        on CPU
  block_re_sub        re.sub with a callable replacement                    on CPU
  block_sleep         time.sleep                                            clock_nanosleep (select before 3.11)
  block_socket        a socket recv from a slow local server                recvfrom
  block_urllib        urllib to a slow local HTTP endpoint                  recvfrom
  block_sqlite        a slow sqlite3 query                                  on CPU
  block_subprocess    subprocess.run of `sleep`                             a wait (wait4, poll...)
  block_fsync         write + os.fsync on a file                            fsync
  block_coroutine     an async def running without awaiting (a task step)   on CPU
  block_gc            a full garbage collection of many cycles              on CPU

Ground truth (JSON, loop.time() seconds), written when the schedule is done; then the process
exits: blocks [{function, kind, start, end, blocked_share, gc_share}] (blocked_share: the share of the
block the thread was neither on a CPU nor waiting for one, from /proc/thread-self/schedstat;
gc_share: the share the garbage collector ran, timed by gc.callbacks), jitter (the heartbeat's worst lateness outside
the blocks), and the task name of the coroutine block.

    corpus.py TRUTH.json [--uvloop] [--only NAME,NAME]
"""

import asyncio
import gc
import http.server
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import truth

BLOCK = 0.4
GAP = 0.3
START_DELAY = 0.8
SERVER_DELAY = BLOCK

blocks = []
heartbeat = []  # (when due, when it ran)


def measured(kind):
    """Record the wall time of a blocking callback with loop.time()."""

    def wrap(fn):
        def run(loop, done):
            t0, s0 = loop.time(), schedstat()
            try:
                fn(loop)
            finally:
                blocks.append(block(fn.__name__, kind, t0, s0, loop))
                done.set_result(None)

        run.__name__ = fn.__name__
        run.inner = fn
        return run

    return wrap


# Seconds spent in garbage collections so far (every collection, timed by gc.callbacks).
gc_seconds = [0.0]
_gc_started = [None]


def on_gc(phase, _info):
    if phase == "start":
        _gc_started[0] = time.monotonic()
    elif _gc_started[0] is not None:
        gc_seconds[0] += time.monotonic() - _gc_started[0]
        _gc_started[0] = None


gc.callbacks.append(on_gc)


def schedstat():
    """This thread's (time on a CPU, time waiting for one) in seconds, from the kernel's
    scheduler statistics, and the seconds collections took so far (`gc_seconds`); the
    first two None where the kernel keeps none."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait = f.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9, gc_seconds[0]
    except (OSError, ValueError):
        return None, None, gc_seconds[0]


def block(function, kind, t0, s0, loop):
    """One block's truth: its times, the share of it the thread spent neither running
    nor runnable (blocked in the kernel: what a sampler sees as "waiting", state S or D),
    and the share the garbage collector ran (a big json.loads allocates enough to trigger
    collections: a sampler may rightly blame those)."""
    end, s1 = loop.time(), schedstat()
    b = {"function": function, "kind": kind, "start": t0, "end": end}
    if s0[0] is not None and s1[0] is not None and end > t0:
        b["blocked_share"] = max(0.0, 1.0 - ((s1[0] - s0[0]) + (s1[1] - s0[1])) / (end - t0))
    if end > t0:
        b["gc_share"] = (s1[2] - s0[2]) / (end - t0)
    return b


def until(loop, seconds=BLOCK):
    t0 = loop.time()
    return lambda: loop.time() - t0 < seconds


def block_cpu_loop(loop):
    going = until(loop)
    x = 0
    while going():
        for i in range(500):
            x += i * i
    return x


def block_genexpr(loop):
    going = until(loop)
    while going():
        sum(i * i for i in range(500))


def block_listcomp(loop):
    going = until(loop)
    while going():
        [i * i for i in range(500)]


def block_sorted(loop):
    data = [(i * 7919) % 10007 for i in range(20000)]
    going = until(loop)
    while going():
        sorted(data, key=lambda v: -v)


JSON_DOC = None


def block_json(loop):
    # Decoded again for the block's length, as the other CPU blocks: one decode took 95 ms on
    # 3.15 (under the 100 ms threshold: no episode was due) and 300 ms on 3.8.
    going = until(loop)
    while going():
        json.loads(JSON_DOC)


def block_re_sub(loop):
    text = "abc def ghi " * 2000
    going = until(loop)
    while going():
        re.sub(r"[a-z]+", lambda m: m.group(0).upper(), text)


def block_sleep(loop):
    time.sleep(BLOCK)


def block_socket(loop):
    with socket.create_connection(SLOW_TCP) as s:
        s.sendall(b"ping\n")
        s.recv(100)


def block_urllib(loop):
    import urllib.request

    urllib.request.urlopen("http://%s:%d/slow" % SLOW_HTTP, timeout=10).read()


def block_sqlite(loop):
    db = sqlite3.connect(":memory:")
    going = until(loop)
    while going():
        db.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000) SELECT sum(x) FROM c").fetchone()


def block_subprocess(loop):
    subprocess.run(["sleep", str(BLOCK)], check=True)


def block_fsync(loop):
    with tempfile.TemporaryFile() as f:
        going = until(loop)
        while going():
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())


GARBAGE = []


def block_gc(loop):
    going = until(loop)
    while going():
        gc.collect()


async def block_coroutine(done):
    loop = asyncio.get_running_loop()
    t0, s0 = loop.time(), schedstat()
    going = until(loop)
    x = 0
    while going():
        for i in range(500):
            x += i * i
    blocks.append(block("block_coroutine", "cpu", t0, s0, loop))
    done.set_result(None)


PATTERNS = [
    (block_cpu_loop, "cpu"),
    (block_genexpr, "cpu"),
    (block_listcomp, "cpu"),
    (block_sorted, "cpu"),
    (block_json, "cpu"),
    (block_re_sub, "cpu"),
    (block_sleep, "sleep"),
    (block_socket, "recv"),
    (block_urllib, "recv"),
    (block_sqlite, "cpu"),
    (block_subprocess, "wait"),
    (block_fsync, "fsync"),
    (block_coroutine, "cpu"),
    (block_gc, "cpu"),
]


def slow_tcp_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            conn, _ = srv.accept()
            conn.recv(100)
            time.sleep(SERVER_DELAY)
            conn.sendall(b"pong\n")
            conn.close()

    threading.Thread(target=serve, daemon=True, name="slow-tcp").start()
    return srv.getsockname()


def slow_http_server():
    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(SERVER_DELAY)
            body = b"slow"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True, name="slow-http").start()
    return srv.server_address


def beat(loop, when):
    heartbeat.append((when, loop.time()))
    nxt = loop.time() + 0.010
    loop.call_at(nxt, beat, loop, nxt)


async def tick(period):
    while True:
        sum(range(50))
        await asyncio.sleep(period)


def jitter():
    """The heartbeat's worst lateness when no block was running or just ended."""
    worst = 0.0
    for when, ran in heartbeat:
        if any(b["start"] - 0.02 <= ran and when <= b["end"] + 0.02 for b in blocks):
            continue
        worst = max(worst, ran - when)
    return worst


async def main(only):
    loop = asyncio.get_running_loop()
    now = loop.time() + 0.010
    loop.call_at(now, beat, loop, now)
    for period in (0.007, 0.013):
        loop.create_task(tick(period))
    await asyncio.sleep(START_DELAY)
    task_name = None
    for fn, kind in PATTERNS:
        if only and fn.__name__ not in only:
            continue
        done = loop.create_future()
        if fn is block_coroutine:
            task = loop.create_task(block_coroutine(done))
            task_name = task.get_name()
        else:
            loop.call_soon(measured(kind)(fn), loop, done)
        await done
        await asyncio.sleep(GAP)
    facts = truth.loop_facts(loop)
    facts.update(blocks=blocks, jitter=jitter(), heartbeats=len(heartbeat), coroutine_task=task_name, written_at=loop.time())
    truth.write_truth(facts)


if __name__ == "__main__":
    only = set()
    if "--only" in sys.argv:
        only = set(sys.argv[sys.argv.index("--only") + 1].split(","))
    JSON_DOC = json.dumps([{"id": i, "name": "x" * 20, "vals": list(range(10))} for i in range(60000)])
    for i in range(300000):
        a = []
        b = [a]
        a.append(b)
        GARBAGE.append(a)
    SLOW_TCP = slow_tcp_server()
    SLOW_HTTP = slow_http_server()
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main(only))
