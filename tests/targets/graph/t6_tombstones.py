import graph_truth  # stands in for the socket of CPython's test (same line numbers)
sock = graph_truth.Signal()
graph_truth.watchdog()
import asyncio

class RemovedTask(asyncio.Task):
    def __hash__(self):
        return 0

class RemainingTask(asyncio.Task):
    def __hash__(self):
        return 1

async def main():
    victim = asyncio.current_task()
    victim.set_name("victim")
    removed = RemovedTask(
        asyncio.sleep(10_000), name="removed"
    )
    remaining = RemainingTask(
        asyncio.sleep(10_000), name="remaining"
    )

    asyncio.future_add_to_awaited_by(victim, removed)
    asyncio.future_add_to_awaited_by(victim, remaining)

    # Removing hash 0 leaves a dummy in slot 0 before the only
    # active entry in slot 1. It must not count toward the set's
    # used entries.
    asyncio.future_discard_from_awaited_by(victim, removed)

    sock.sendall(b"ready"); sock.recv(16)  # one line: the truth is read where main blocks
    # (CPython's test has the recv on the line above's next line)

asyncio.run(main())
