"""A timer that is due waits in the ready queue while the callback before it blocks.

asyncio's `_run_once` moves every due timer into `_ready` before running the ready callbacks in
order; a timer due in the same iteration as a blocking callback queued before it waits in
`_ready`, not in `_scheduled` (whose head is then a timer far in the future). Its lateness is
the loop's lag all the same. (uvloop runs due timers from libuv's heap: the timer stays there.)

Truth: the due timer's `when`; the loop blocks in `block` until killed.
"""

import asyncio
import time

import truth

due = {}


def heartbeat():
    pass


def block(loop):
    facts = truth.loop_facts(loop)
    facts.update(state="callback", callback="block", callback_kind="function", task=None, blocking_function="block",
                 due_when=due["when"])
    truth.write_truth(facts)
    time.sleep(3600)


def arrange(loop):
    # Queued now: `block` first; the heartbeat is already due, so the next iteration appends
    # it to the ready queue behind `block`.
    loop.call_soon(block, loop)
    due["when"] = loop.time() - 0.001
    loop.call_at(due["when"], heartbeat)


def main():
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.call_later(600.0, heartbeat)  # the heap's head stays this far-away timer
    truth.call_soon_after_poll(loop, lambda: arrange(loop))
    loop.run_forever()


if __name__ == "__main__":
    main()
