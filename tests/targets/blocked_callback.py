"""A plain callback (a method, to test qualified names) that queues exactly 7 call_soon
callbacks and 3 timers with known `when`, cancels one (the earliest, so the heap's head is a
cancelled timer), writes the truth, then blocks the loop in time.sleep.

(uvloop turns timers whose `when` has passed into plain callbacks; the truth, measured
in-process, accounts for that.)"""

import asyncio
import time

import truth


def noop(*_args):
    pass


class Blocker:
    def __init__(self, loop):
        self.loop = loop

    def block(self):
        loop = self.loop
        for i in range(7):
            loop.call_soon(noop, i)
        now = loop.time()
        cancelled = loop.call_at(now - 0.30, noop)
        loop.call_at(now - 0.20, noop)  # earliest live timer: already overdue
        loop.call_at(now + 30.0, noop)
        cancelled.cancel()
        facts = truth.loop_facts(loop)
        facts.update(state="callback", callback="Blocker.block", callback_kind="function", task=None,
                     blocking_function="block")
        truth.write_truth(facts)
        time.sleep(3600)


def main():
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    truth.call_soon_after_poll(loop, Blocker(loop).block)
    loop.run_forever()


if __name__ == "__main__":
    main()
