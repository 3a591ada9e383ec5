"""A thread whose running loop is not an asyncio loop (as a Qt or other foreign loop
registers itself with `asyncio._set_running_loop`). With `--beside`, the main thread runs
an asyncio loop too: loopspy must read that one and list the foreign thread without a loop;
alone, it must say which class it cannot read (exit 12)."""

import asyncio
import threading

import truth


class ForeignEventLoop:
    """Not a subclass of asyncio's loops."""


def foreign(ready):
    asyncio._set_running_loop(ForeignEventLoop())
    ready.set()
    truth.hold_forever()


def main():
    ready = threading.Event()
    threading.Thread(target=foreign, args=(ready,), name="foreign", daemon=True).start()
    ready.wait()
    if "--beside" in __import__("sys").argv:
        loop = asyncio.new_event_loop()
        loop.call_soon(truth.write_truth, {"beside": True})
        loop.run_forever()
    else:
        truth.write_truth({"beside": False})
        truth.hold_forever()


if __name__ == "__main__":
    main()
