"""A task step blocks the loop: the task "stuck-handler" runs Service.handle, which blocks in
time.sleep after 3 other callbacks were queued and one timer set. With --unnamed the task
gets the default name (Task-N; stored lazily as the int N from 3.12)."""

import asyncio
import sys
import time

import truth


class Service:
    async def handle(self, loop):
        await asyncio.sleep(0)  # run the blocking part from a later step, not the first
        for _ in range(3):
            loop.call_soon(lambda: None)
        loop.call_later(60.0, lambda: None)
        facts = truth.loop_facts(loop)
        facts.update(state="callback", callback="Service.handle", callback_kind="task_step",
                     task=EXPECTED_NAME[0], task_coro="Service.handle", blocking_function="handle")
        truth.write_truth(facts)
        time.sleep(3600)


EXPECTED_NAME = [None]


async def main():
    loop = asyncio.get_running_loop()
    coro = Service().handle(loop)
    if "--unnamed" in sys.argv:
        # The next unnamed task gets the next number. Learn it from a probe task, so that
        # get_name() (which turns 3.12+'s lazy int name into a str) never runs on the task
        # loopspy will read.
        probe = loop.create_task(asyncio.sleep(0))
        n = int(probe.get_name().rsplit("-", 1)[1])
        await probe
        EXPECTED_NAME[0] = "Task-%d" % (n + 1)
        task = loop.create_task(coro)
    else:
        EXPECTED_NAME[0] = "stuck-handler"
        task = loop.create_task(coro, name="stuck-handler")
    await task


if __name__ == "__main__":
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
