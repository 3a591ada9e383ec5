"""Run under the target's own interpreter (3.14+): what `python -m asyncio ps PID` shows, as
JSON rows (asyncio.tools.build_task_table over RemoteUnwinder(PID).get_all_awaited_by()), and
the running task's whole stack from get_async_stack_trace()."""
import json
import sys
import time

from _remote_debugging import RemoteUnwinder
from asyncio.tools import build_task_table

pid = int(sys.argv[1])
last = None
for _ in range(50):
    try:
        awaited = RemoteUnwinder(pid).get_all_awaited_by()
        rows = build_task_table(awaited)
        trace = RemoteUnwinder(pid).get_async_stack_trace()
        break
    except (RuntimeError, OSError, UnicodeDecodeError) as e:
        last = e
        time.sleep(0.05)
else:
    raise SystemExit(f"RemoteUnwinder failed: {last!r}")
running = {}
for info in trace:
    for t in info.awaited_by:
        running.setdefault(hex(t.task_id), [f.funcname for c in t.coroutine_stack for f in c.call_stack])
print(json.dumps({"rows": [[str(c) for c in row] for row in rows], "async_trace": running}))
