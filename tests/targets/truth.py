"""Shared helpers for ground-truth scenario targets.

Each scenario puts its own event loop into a known state, measures that state in-process
(len(), loop.time(), threading.get_native_id(), ...), writes it as JSON to the path given as
the first argument, and then holds the state until it is killed.

Works on CPython 3.8+ with the standard library only. `--uvloop` (where a scenario supports
it) runs the same scenario on uvloop.
"""

import asyncio
import json
import os
import sys
import threading


def truth_path():
    if len(sys.argv) < 2:
        sys.exit("usage: %s TRUTH.json [--uvloop]" % sys.argv[0])
    return sys.argv[1]


def use_uvloop():
    return "--uvloop" in sys.argv[2:]


def new_loop():
    if use_uvloop():
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def write_truth(data):
    """Write atomically: the test polls for the file and must never see half of it."""
    path = truth_path()
    data = dict(data)
    data.setdefault("pid", os.getpid())
    data.setdefault("python", "%d.%d" % sys.version_info[:2])
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def loop_facts(loop):
    """What the test compares exactly: measured here, by the loop's own API."""
    facts = {
        "thread_native_id": threading.get_native_id() if hasattr(threading, "get_native_id") else None,
        "thread_name": threading.current_thread().name,
        "loop_class": type(loop).__module__.split(".")[0] == "uvloop" and "uvloop.Loop" or type(loop).__name__,
        "ready": len(loop._ready),
    }
    if hasattr(loop, "_scheduled"):
        live = [t.when() for t in loop._scheduled if not t.cancelled()]
        facts["timers"] = len(loop._scheduled)
        facts["earliest_live_when"] = min(live) if live else None
        facts["fds"] = len(loop._selector.get_map())
        facts["selector"] = type(loop._selector).__name__
    return facts


def hold_forever():
    """Keep the process alive (state frozen) until the test kills it."""
    threading.Event().wait()
