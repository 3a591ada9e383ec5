"""Shared helpers for ground-truth scenario targets.

Each scenario puts its own event loop into a known state, measures that state in-process
(len(), loop.time(), threading.get_native_id(), ...), writes it as JSON to the path given as
the first argument, and then holds the state until it is killed.

Works on CPython 3.8+ with the standard library only. `--uvloop` (where a scenario supports
it) runs the same scenario on uvloop.
"""

import asyncio
import collections
import gc
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


def is_uvloop(loop):
    return type(loop).__module__.split(".")[0] == "uvloop"


def epoll_watched_fds():
    """File descriptors in this process's (single) epoll set, as the kernel lists them."""
    counts = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + fd) != "anon_inode:[eventpoll]":
                continue
            with open("/proc/self/fdinfo/" + fd) as f:
                counts.append(sum(1 for line in f if line.startswith("tfd:")))
        except OSError:
            pass
    return counts[0] if len(counts) == 1 else None


def timer_handles(loop):
    """The loop's timer handles (for uvloop, found through gc.get_referents)."""
    if is_uvloop(loop):
        refs = gc.get_referents(loop)
        sets = [r for r in refs if type(r) is set and r and all(type(t).__name__ == "TimerHandle" for t in r)]
        return list(sets[0]) if sets else []
    return list(loop._scheduled)


def due_timers(loop):
    """Live timers due by now: each may put a callback in the ready queue (the stock loop
    moves the handle itself; uvloop runs it, and a sleep it ends queues the task's step) in
    the moment before the loop runs that queue."""
    now = loop.time()
    return sum(1 for t in timer_handles(loop) if not t.cancelled() and t.when() <= now)


def loop_facts(loop):
    """What the test compares exactly: measured here, by the loop's own API (for uvloop,
    whose fields are not visible from Python, through gc.get_referents and the kernel)."""
    facts = {
        "thread_native_id": threading.get_native_id() if hasattr(threading, "get_native_id") else None,
        "thread_name": threading.current_thread().name,
        "loop_class": "uvloop.Loop" if is_uvloop(loop) else type(loop).__name__,
    }
    if is_uvloop(loop):
        refs = gc.get_referents(loop)
        ready = [r for r in refs if type(r) is collections.deque]
        assert len(ready) == 1, "expected one deque (_ready) in uvloop.Loop"
        timers = timer_handles(loop)
        live = [t.when() for t in timers if not t.cancelled()]
        facts.update(ready=len(ready[0]), timers=len(timers), earliest_live_when=min(live) if live else None,
                     fds=epoll_watched_fds(), selector=None)
    else:
        live = [t.when() for t in loop._scheduled if not t.cancelled()]
        facts.update(ready=len(loop._ready), timers=len(loop._scheduled),
                     earliest_live_when=min(live) if live else None,
                     fds=len(loop._selector.get_map()), selector=type(loop._selector).__name__)
    return facts


def call_soon_after_poll(loop, fn, delay=0.05):
    """Run `fn` as a plain callback once the loop has been polling for `delay` seconds.

    Scenarios record their truth from a callback like this rather than from a timer: a timer
    callback is itself a timer while it runs (uvloop still lists it), which would blur the
    timer figures. And by then the loop has polled, so uvloop has registered its file
    descriptors with epoll, as in a running service."""
    loop.call_later(delay, loop.call_soon, fn)


def hold_forever():
    """Keep the process alive (state frozen) until the test kills it."""
    threading.Event().wait()
