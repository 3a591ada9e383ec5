"""Loops with a known problem, for the diagnoses (loopspy's `analysis::diagnosis`).

    diagnoses.py TRUTH.json io [--uvloop]
        Every 0.2 s a callback runs, in turn: `fetch_prices`, a synchronous HTTP request with
        urllib (a local server in a thread answers after HTTP_DELAY: the loop waits in recvfrom
        or poll); `parse_report`, json.loads of a document sized at start to take about JSON_S
        on this interpreter (on CPU); `run_tool`, subprocess.run of `sleep TOOL_S` (the loop
        waits in wait4). Truth: the functions; each call's start and end (loop.time()) in
        TRUTH.json.calls, rewritten after each call, with every garbage collection of 20 ms
        or more (timed by gc.callbacks; decoding the document allocates enough to set off
        full collections) as a call of "<gc>" with its generation.

    diagnoses.py TRUTH.json overload [--uvloop]
        Healthy until SIGUSR1: two tasks tick every 10 ms, nothing blocks. On SIGUSR1 a thread
        starts sending the loop ARRIVALS_PER_S requests a second on a pipe, each handled by a
        callback computing WORK_S: a quarter more than one loop can run, and no callback runs
        long. Each iteration runs what the last one read, so iterations grow by a quarter
        each: the ready queue's saw-tooth rises steadily. (At three times the capacity each
        iteration is three times the last: two seconds in, one iteration drains for seconds,
        and a few seconds of recording can see only the queue going down.) Truth: when the
        overload started (written to TRUTH.json.overload).
"""

import asyncio
import gc
import http.server
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import truth

HTTP_DELAY = 0.2
JSON_S = 0.25
PERIOD = 0.2
ARRIVALS_PER_S = 420
WORK_S = 0.003
TOOL_S = 0.2

calls = []


class SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(HTTP_DELAY)
        body = b'{"prices": [1, 2, 3]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def make_document():
    """A JSON document whose json.loads takes about JSON_S here."""
    unit = json.dumps([{"id": i, "name": "item %d" % i, "tags": ["a", "b", "c"], "price": i * 1.5} for i in range(2000)])
    t0 = time.perf_counter()
    for _ in range(3):
        json.loads(unit)
    per = (time.perf_counter() - t0) / 3
    copies = max(1, int(JSON_S / max(per, 1e-6)))
    return "[" + ",".join([unit] * copies) + "]"


def io_mode():
    server = http.server.HTTPServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/prices" % server.server_address[1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    document = make_document()
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)

    def fetch_prices():
        t0 = loop.time()
        with opener.open(url, timeout=30) as r:
            r.read()
        calls.append({"function": "fetch_prices", "start": t0, "end": loop.time()})

    def parse_report():
        t0 = loop.time()
        json.loads(document)
        calls.append({"function": "parse_report", "start": t0, "end": loop.time()})

    collecting = {}

    def on_gc(phase, info):
        if phase == "start":
            collecting["t0"] = time.monotonic()
        elif "t0" in collecting:
            t0, t1 = collecting.pop("t0"), time.monotonic()
            if t1 - t0 >= 0.02:
                calls.append({"function": "<gc>", "start": t0, "end": t1, "generation": info["generation"]})

    gc.callbacks.append(on_gc)

    state = {"n": 0}

    saves = queue.Queue()

    def saver():
        # The truth is written by a thread: the loop does no file I/O of its own.
        while True:
            snapshot = saves.get()
            path = sys.argv[1] + ".calls"
            with open(path + ".tmp", "w") as f:
                json.dump(snapshot, f)
            os.replace(path + ".tmp", path)

    threading.Thread(target=saver, daemon=True).start()

    def save_calls():
        saves.put(list(calls))

    def run_tool():
        t0 = loop.time()
        subprocess.run(["sleep", str(TOOL_S)], check=True)
        calls.append({"function": "run_tool", "start": t0, "end": loop.time()})

    def tick():
        (fetch_prices, parse_report, run_tool)[state["n"] % 3]()
        state["n"] += 1
        loop.call_soon(save_calls)  # a callback of its own: not part of the blocking one
        if state["n"] == 1:
            truth.write_truth({"http_function": "fetch_prices", "json_function": "parse_report", "calls": calls})
        loop.call_later(PERIOD, tick)

    async def ticker():
        while True:
            await asyncio.sleep(0.01)

    loop.create_task(ticker())
    loop.call_soon(tick)
    loop.run_forever()


def work():
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < WORK_S:
        pass


def overload_mode():
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)

    # Requests arrive on a pipe, one byte each, written by a thread at ARRIVALS_PER_S (as
    # many as the time elapsed calls for, however late the thread wakes); the loop reads what
    # came and schedules one callback per request, as a server's protocol would.
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)

    def producer():
        sent, t0 = 0, time.monotonic()
        while True:
            due = int((time.monotonic() - t0) * ARRIVALS_PER_S)
            if due > sent:
                os.write(wfd, b"x" * (due - sent))
                sent = due
            time.sleep(0.01)

    def on_requests():
        try:
            data = os.read(rfd, 65536)
        except BlockingIOError:
            return
        for _ in range(len(data)):
            loop.call_soon(work)

    def start_overload():
        with open(sys.argv[1] + ".overload", "w") as f:
            json.dump({"started": loop.time()}, f)
        loop.add_reader(rfd, on_requests)
        threading.Thread(target=producer, daemon=True).start()

    loop.add_signal_handler(signal.SIGUSR1, start_overload)

    async def ticker():
        while True:
            await asyncio.sleep(0.01)

    loop.create_task(ticker())
    loop.create_task(ticker())
    loop.call_later(0.2, lambda: truth.write_truth({"mode": "overload"}))
    loop.run_forever()


if __name__ == "__main__":
    {"io": io_mode, "overload": overload_mode}[sys.argv[2]]()
