"""A program that runs one asyncio.run() per job, as batch workers do: each job is a new event
loop in the same thread, blocks it once for BLOCK seconds in `job_block`, and ends; between
jobs no loop runs for GAP seconds. Truth: every block, measured in-process.

    jobs.py TRUTH.json [--uvloop] [--jobs N]
"""

import asyncio
import sys
import time

import truth

BLOCK = 0.25
GAP = 0.1
JOBS = int(sys.argv[sys.argv.index("--jobs") + 1]) if "--jobs" in sys.argv else 10
blocks = []


def job_block(loop):
    t0 = loop.time()
    time.sleep(BLOCK)
    blocks.append({"function": "job_block", "start": t0, "end": loop.time()})


async def job(i):
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.15)
    done = loop.create_future()
    loop.call_soon(lambda: (job_block(loop), done.set_result(None)))
    await done
    await asyncio.sleep(0.1)


def main():
    time.sleep(1.0)  # loopspy attaches to the first loop
    for i in range(JOBS):
        loop = truth.new_loop()
        try:
            loop.run_until_complete(job(i))
        finally:
            loop.close()
        time.sleep(GAP)
    truth.write_truth({"blocks": blocks, "jobs": JOBS})


if __name__ == "__main__":
    # A first loop for loopspy to find, then the jobs.
    first = truth.new_loop()
    first.run_until_complete(asyncio.sleep(1.5))
    first.close()
    main()
