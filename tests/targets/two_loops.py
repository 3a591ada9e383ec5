"""Two threads, each running its own loop: "loop-a" blocks in a callback with 3 callbacks
ready; "loop-b" is idle with 2 timers. The main thread runs no loop.

(With --uvloop there are two epoll sets in the process, which the in-process truth cannot
tell apart, so it records no fd count.)"""

import asyncio
import threading
import time

import truth

facts = {}
ready = threading.Barrier(3)


def run_a():
    loop = truth.new_loop()

    def block():
        for _ in range(3):
            loop.call_soon(lambda: None)
        f = truth.loop_facts(loop)
        f.update(state="callback", callback="run_a.<locals>.block", callback_kind="function", task=None)
        facts["loop-a"] = f
        ready.wait()
        time.sleep(3600)

    truth.call_soon_after_poll(loop, block)
    loop.run_forever()


def run_b():
    loop = truth.new_loop()
    loop.call_later(500.0, lambda: None)
    loop.call_later(700.0, lambda: None)

    def record():
        f = truth.loop_facts(loop)
        f.update(state="idle", callback=None, task=None)
        facts["loop-b"] = f
        ready.wait()

    truth.call_soon_after_poll(loop, record)
    loop.run_forever()


def main():
    threading.Thread(target=run_a, name="loop-a", daemon=True).start()
    threading.Thread(target=run_b, name="loop-b", daemon=True).start()
    ready.wait()
    time.sleep(0.2)  # let loop-b settle into select
    truth.write_truth({"loops": facts})
    truth.hold_forever()


if __name__ == "__main__":
    main()
