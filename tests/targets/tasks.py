"""Tasks with known names, states, suspension points and await edges.

  "parent"       awaits asyncio.gather(worker-1, worker-2, worker-3)
  "worker-N"     each awaits queue.get() on an empty queue
  "waiter"       awaits the task "sleeper" directly
  "sleeper"      awaits asyncio.sleep(3600) inside a helper coroutine `nap`
  "cycle-a"      awaits "cycle-b", which awaits "cycle-a" (an await cycle)
  "finished"     returned; "cancelled" was cancelled (both kept alive by a reference)
  "main"         the running task: it writes the truth, then blocks the loop (time.sleep)

The truth is measured in-process through asyncio's own API: `all_tasks()`, `get_name()`,
`done()`/`cancelled()`, the `cr_await` chain of each coroutine (function, file, line,
innermost first) and `_fut_waiter` (a gather's `_children`) for who awaits whom.
"""

import asyncio
import sys
import time

import truth


async def worker(queue):
    return await queue.get()


async def nap():
    await asyncio.sleep(3600)


async def sleeper():
    await nap()


async def waiter(task):
    await task


async def parent(workers):
    await asyncio.gather(*workers)


async def cycle(other):
    await asyncio.sleep(0)
    await other[0]


async def quick():
    return 42


def qualname(code):
    return getattr(code, "co_qualname", code.co_name)


def chain(task):
    """Coroutines a task is suspended in, innermost first."""
    frames = []
    obj = task.get_coro()
    while obj is not None and (hasattr(obj, "cr_frame") or hasattr(obj, "gi_frame")):
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            break
        frames.append({"function": qualname(frame.f_code), "file": frame.f_code.co_filename, "line": frame.f_lineno})
        obj = getattr(obj, "cr_await", None) if hasattr(obj, "cr_await") else getattr(obj, "gi_yieldfrom", None)
    return list(reversed(frames))


def state(task):
    if not task.done():
        return "pending"
    return "cancelled" if task.cancelled() else "done"


def awaits(task):
    fut = getattr(task, "_fut_waiter", None)
    if fut is None:
        return []
    if isinstance(fut, asyncio.Task):
        return [fut.get_name()]
    children = getattr(fut, "_children", None)
    if children is not None:
        return [c.get_name() for c in children if isinstance(c, asyncio.Task)]
    return []


async def main():
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    workers = [loop.create_task(worker(queue), name="worker-%d" % i) for i in (1, 2, 3)]
    loop.create_task(parent(workers), name="parent")
    sleeper_task = loop.create_task(sleeper(), name="sleeper")
    loop.create_task(waiter(sleeper_task), name="waiter")
    a_ref, b_ref = [None], [None]
    a_ref[0] = loop.create_task(cycle(b_ref), name="cycle-a")
    b_ref[0] = loop.create_task(cycle(a_ref), name="cycle-b")
    finished = loop.create_task(quick(), name="finished")
    cancelled = loop.create_task(asyncio.sleep(3600), name="cancelled")
    await asyncio.sleep(0.1)
    cancelled.cancel()
    await asyncio.sleep(0.1)
    keep = [finished, cancelled]

    me = asyncio.current_task()
    listed = [t for t in asyncio.all_tasks(loop)] + keep
    tasks = {}
    for t in listed:
        tasks[t.get_name()] = {
            "state": state(t),
            "running": t is me,
            "coroutines": chain(t) if not t.done() and t is not me else [],
            "awaits": awaits(t) if t is not me else [],
        }
    truth.write_truth({
        "tasks": tasks,
        # 3.14+ unlink finished tasks from the interpreter's task lists.
        "done_listed": sys.version_info < (3, 14),
        "loop_class": truth.loop_facts(loop)["loop_class"],
    })
    time.sleep(3600)
    del keep


if __name__ == "__main__":
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(loop.create_task(main(), name="main"))
