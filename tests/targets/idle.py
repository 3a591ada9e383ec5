"""An idle loop: timers far in the future, two extra sockets registered for reading, nothing
ready. The truth is written from a callback; the loop then waits in selector.select."""

import asyncio
import socket

import truth


def main():
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    a, b = socket.socketpair()
    loop.add_reader(a.fileno(), lambda: None)
    loop.add_reader(b.fileno(), lambda: None)
    loop.call_later(1000.0, lambda: None)
    loop.call_later(2000.0, lambda: None)

    def record():
        facts = truth.loop_facts(loop)
        facts.update(state="idle", callback=None, task=None)
        truth.write_truth(facts)

    truth.call_soon_after_poll(loop, record, delay=0.2)
    loop.run_forever()


if __name__ == "__main__":
    main()
