"""Ground truth for the task-graph scenarios (tests/tasks.rs, `graph_*`).

The scenarios are ports of CPython's own tests of remote task inspection
(Lib/test/test_external_inspection.py, Lib/test/test_asyncio/test_graph.py): the same code on
the same lines, with the test's socket replaced by a `Signal` whose `sendall(b"ready")`
records, from inside the loop's thread and at that very moment, what loopspy must find:

- every pending task of the loop: name, address, whether it is the running task;
- its stack, innermost first, as (function, file, line): for the running task, the thread's
  frames from the caller of `sendall` down to the task's own coroutine frame; for the others
  the chain of awaited coroutines, with the rule of CPython's remote inspection (a
  coroutine or async generator continues into an awaited coroutine or into the async
  generator behind an asend/athrow step; a generator into a generator; anything else ends
  the chain);
- who awaits it:
  - 3.14+: the interpreter's own record, `Future._asyncio_awaited_by` (tasks, and how many
    awaiters are not tasks), which is what `python -m asyncio ps` shows;
  - every version: the edges derivable without that record, from the awaiting side's
    `_fut_waiter` (a task, or a gather's pending children) and from `TaskGroup`s (a task's
    done-callback `TaskGroup._on_task_done` -> the group -> `_parent_task`).

The truth is written to argv[1] (JSON) once; argv[2] is an optional variant name.
"""

import asyncio
import functools
import gc
import json
import os
import sys
import threading
import time
import types

TRUTH = sys.argv[1]
VARIANT = sys.argv[2] if len(sys.argv) > 2 else ""
HAS_AWAITED_BY = sys.version_info >= (3, 14)


def unused_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watchdog(seconds=900):
    """End the process if the test that started it never does."""
    def run():
        time.sleep(seconds)
        os._exit(3)
    threading.Thread(target=run, daemon=True).start()


class Signal:
    """What the scenario calls `sock`."""

    def __init__(self, count=1, settle=None):
        self._lock = threading.Lock()
        self._done = False
        # Record at the `count`-th signal; with `settle`, that many seconds later, from the
        # loop (idle by then: the signalling task has gone on to its next await).
        self._count = count
        self._settle = settle
        # `recv(n)` blocks for good in C (no Python frame of ours on the stack): a read of a
        # pipe nobody writes to.
        self._pipe = os.pipe()
        self.recv = functools.partial(os.read, self._pipe[0])

    def sendall(self, data):
        with self._lock:
            if self._done:
                return
            self._count -= 1
            if self._count > 0:
                return
            self._done = True
        if self._settle is not None:
            asyncio.get_running_loop().call_later(self._settle, self._write, None)
        else:
            self._write(sys._getframe(1) if asyncio.current_task() is not None else None)

    def _write(self, caller, previous=None, tries=50):
        truth = snapshot(caller)
        if caller is None or asyncio.current_task() is None:
            # Signalled from a callback, the loop idle: write what stays the same 0.2 s
            # apart (on a loaded machine a timer due earlier may still be unwinding).
            if truth != previous and tries > 0:
                asyncio.get_running_loop().call_later(0.2, self._write, None, truth, tries - 1)
                return
        tmp = TRUTH + ".tmp"
        with open(tmp, "w") as f:
            json.dump(truth, f)
        os.replace(tmp, TRUTH)


def qualname(code):
    return getattr(code, "co_qualname", code.co_name)


def frame_info(frame):
    return [qualname(frame.f_code), frame.f_code.co_filename, frame.f_lineno]


def kind(obj):
    t = type(obj)
    if t is types.CoroutineType:
        return "coroutine"
    if t is types.GeneratorType:
        return "generator"
    if t is types.AsyncGeneratorType:
        return "async_generator"
    if t.__module__ == "builtins" and t.__name__ in ("async_generator_asend", "async_generator_athrow"):
        return "step"
    return None


def owner(obj):
    """The generator-like object whose frame runs `obj` (an asend/athrow step's async
    generator), with its kind."""
    k = kind(obj)
    if k == "step":
        for ref in gc.get_referents(obj):
            if kind(ref) == "async_generator":
                return ref, "async_generator"
        return None
    if k is None:
        return None
    return obj, k


def frame_and_await(obj, k):
    if k == "coroutine":
        return obj.cr_frame, obj.cr_await
    if k == "generator":
        return obj.gi_frame, obj.gi_yieldfrom
    return obj.ag_frame, obj.ag_await


def coro_stack(coro):
    frames = []
    obj, prev = coro, None
    for _ in range(1024):
        k = kind(obj)
        follows = k is not None and (
            prev is None
            or (prev in ("coroutine", "async_generator") and k in ("coroutine", "step"))
            or (prev == "generator" and k == "generator")
        )
        own = owner(obj) if follows else None
        if own is None:
            break
        obj, k = own
        frame, awaited = frame_and_await(obj, k)
        if frame is None:
            break
        frames.append(frame_info(frame))
        if awaited is None:
            break
        obj, prev = awaited, k
    return list(reversed(frames))


def running_stack(caller, task):
    own = owner(task.get_coro())
    top = frame_and_await(*own)[0] if own else None
    frames = []
    f = caller
    while f is not None:
        frames.append(frame_info(f))
        if f is top:
            return frames
        f = f.f_back
    raise AssertionError("the running task's coroutine frame is not on the stack")


def derived_awaiters(task, tasks):
    """Tasks awaiting `task`, found without the interpreter's record."""
    out = set()
    gathering = getattr(asyncio.tasks, "_GatheringFuture", None)
    for w in tasks:
        fw = getattr(w, "_fut_waiter", None)
        if fw is task:
            out.add(w)
        elif gathering is not None and isinstance(fw, gathering) and any(c is task for c in fw._children):
            out.add(w)
    for cb, _ in getattr(task, "_callbacks", None) or []:
        if (
            isinstance(cb, types.MethodType)
            and getattr(cb.__func__, "__qualname__", "") == "TaskGroup._on_task_done"
            and cb.__func__.__code__.co_filename.endswith(os.path.join("asyncio", "taskgroups.py"))
        ):
            parent = getattr(cb.__self__, "_parent_task", None)
            if isinstance(parent, asyncio.Task) and parent is not task:
                out.add(parent)
    return out


def recorded_awaiters(task):
    """3.14+: (awaiting tasks, count of awaiting objects that are not tasks)."""
    ab = task._asyncio_awaited_by
    members = list(ab) if ab else []
    tasks = [w for w in members if isinstance(w, asyncio.Task)]
    return tasks, len(members) - len(tasks)


def snapshot(caller):
    loop = asyncio.get_running_loop()
    me = asyncio.current_task(loop)
    pending = list(asyncio.all_tasks(loop))
    out = []
    for t in pending:
        running = t is me
        entry = {
            "name": t.get_name(),
            "address": hex(id(t)),
            "running": running,
            "stack": running_stack(caller, t) if running else coro_stack(t.get_coro()),
            "derived_awaiters": sorted(hex(id(w)) for w in derived_awaiters(t, pending)),
        }
        if HAS_AWAITED_BY:
            tasks, others = recorded_awaiters(t)
            entry["recorded_awaiters"] = sorted(hex(id(w)) for w in tasks)
            entry["recorded_others"] = others
        out.append(entry)
    return {
        "version": "%d.%d" % sys.version_info[:2],
        "variant": VARIANT,
        "thread_native_id": threading.get_native_id(),
        "thread_name": threading.current_thread().name,
        "tasks": out,
    }
