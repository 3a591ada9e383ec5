"""A service that checks its own results while loopspy watches it: tasks compute SHA-256
digests of deterministic data and compare them with digests computed before loopspy could
attach; a thread watches /proc/self for any sign of being traced or stopped.

Runs for the number of seconds given after the truth path (default 60), then writes:
  ops, mismatches (must be 0), ops_per_s, traced_seen (TracerPid ever non-zero),
  stopped_seen (state t/T ever seen), max_gap_ms (longest pause of a 1 ms ticker thread)."""

import asyncio
import hashlib
import sys
import threading
import time

import truth

BLOBS = [bytes((i * 7 + j) % 251 for j in range(4096)) for i in range(64)]
EXPECTED = [hashlib.sha256(b).hexdigest() for b in BLOBS]
seen = {"traced": False, "stopped": False, "max_gap": 0.0}


def watchdog(stop):
    last = time.monotonic()
    while not stop.is_set():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("TracerPid:") and line.split()[1] != "0":
                    seen["traced"] = True
                if line.startswith("State:") and line.split()[1] in ("t", "T"):
                    seen["stopped"] = True
        now = time.monotonic()
        seen["max_gap"] = max(seen["max_gap"], now - last)
        last = now
        time.sleep(0.001)


async def worker(i, counters):
    while True:
        k = (i + counters["ops"]) % len(BLOBS)
        if hashlib.sha256(BLOBS[k]).hexdigest() != EXPECTED[k]:
            counters["mismatches"] += 1
        counters["ops"] += 1
        await asyncio.sleep(0)


async def main(seconds):
    stop = threading.Event()
    threading.Thread(target=watchdog, args=(stop,), daemon=True, name="watchdog").start()
    counters = {"ops": 0, "mismatches": 0}
    truth.write_truth({"started": True})
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(worker(i, counters)) for i in range(8)]
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    for t in tasks:
        t.cancel()
    stop.set()
    truth.write_truth({
        "done": True,
        "ops": counters["ops"],
        "mismatches": counters["mismatches"],
        "ops_per_s": counters["ops"] / elapsed,
        "traced_seen": seen["traced"],
        "stopped_seen": seen["stopped"],
        "max_gap_ms": seen["max_gap"] * 1e3,
    })
    await asyncio.Event().wait()


if __name__ == "__main__":
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else 60.0
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main(seconds))
