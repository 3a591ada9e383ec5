"""A benchmark target: an asyncio loop that is busy nearly all the time in code whose frames
come and go faster than a non-blocking stack read can follow them.

    python generators.py [--ready FILE] [--uvloop] [--seed N]

What runs (all of it on one event loop, until the process is killed):

- task chains: coroutines awaiting each other 3-5 deep, whose innermost level does a burst
  of work and then `await asyncio.sleep(0)` (back through the ready queue);
- the bursts: generator expressions (`sum(i*i for i in range(500))`, nested ones), list,
  set and dict comprehensions, `sorted(key=lambda ...)`, `max(key=...)`, `map(lambda ...)`,
  `any()`/`all()` over generators: each call or generator is a frame made and dropped;
- plain callbacks (`call_soon`, `call_later`) running the same kind of burst;
- async generators, consumed by `async for` and by async comprehensions;
- every 1.5-3 s, one block of 100-400 ms made of the same generator-heavy code (a callback or
  a task step that holds the loop), so loopspy has blocking episodes to find;
- a timer task (sleep 50 ms), so `loop._scheduled` is never empty.

Between bursts the loop passes through `select` with a zero timeout only: it is CPU-bound.
`--ready FILE` writes `ready <pid>` to FILE once the loop runs. `--uvloop` runs it on uvloop
(uvloop must be importable: PYTHONPATH). Standard library only; CPython 3.8+.
"""

import argparse
import asyncio
import os
import random
import sys
import time

N = 500


# ---- bursts of work whose frames come and go -------------------------------------------------


def squares():
    return sum(i * i for i in range(N))


def nested_gen():
    return sum(x for x in (i * 3 for i in range(N // 2)) if x & 1)


def comprehensions():
    a = [i * 7 % 11 for i in range(300) if i & 3]
    b = {i: i * i for i in range(100)}
    c = {x % 13 for x in a}
    return len(a) + len(b) + len(c)


def sorting(rows):
    s = sorted(rows, key=lambda r: (r[1], -r[0]))
    m = max(rows, key=lambda r: r[2])
    return s[0][0] + m[0] + sum(map(lambda r: r[1], rows[:50]))


def predicates():
    xs = range(400)
    return any(x > 398 for x in xs) + all(x >= 0 for x in xs)


def strings():
    return len("".join(str(i) for i in range(150)))


BURSTS = [squares, nested_gen, comprehensions, predicates, strings]


def burst(rng, rows, k=3):
    total = 0
    for _ in range(k):
        total += rng.choice(BURSTS)()
    total += sorting(rows)
    return total


def hold(seconds, rows):
    """Hold the loop for `seconds` with the same generator-heavy code (a blocking episode)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += squares() + nested_gen() + comprehensions() + sorting(rows)
    return n


# ---- coroutines awaiting each other ----------------------------------------------------------


async def level(n, rng, rows):
    if n == 0:
        burst(rng, rows)
        await asyncio.sleep(0)
        return sum(i for i in range(N // 5))
    r = await level(n - 1, rng, rows)
    return r + 1


async def chain(seed, rows):
    rng = random.Random(seed)
    while True:
        await level(rng.randint(3, 5), rng, rows)


# ---- async generators ------------------------------------------------------------------------


async def produce(rng, count):
    for i in range(count):
        yield sum(j * j for j in range(i % 50 + 100))
        if i % 4 == 0:
            await asyncio.sleep(0)


async def consume_agens(seed):
    rng = random.Random(seed)
    while True:
        total = 0
        async for v in produce(rng, 40):
            total += v
        got = [v async for v in produce(rng, 20) if v & 1]
        total += len(got)
        await asyncio.sleep(0)


# ---- plain callbacks -------------------------------------------------------------------------


def callback_burst(loop, rng, rows):
    burst(rng, rows, k=2)
    if rng.random() < 0.2:
        loop.call_later(0.001, callback_burst, loop, rng, rows)
    else:
        loop.call_soon(callback_burst, loop, rng, rows)


# ---- blocks of 100-400 ms --------------------------------------------------------------------


def block_in_callback(rows, ms):
    hold(ms / 1000, rows)


async def blocks(seed, rows):
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    while True:
        await asyncio.sleep(rng.uniform(1.5, 3.0))
        ms = rng.uniform(100, 400)
        if rng.random() < 0.5:
            loop.call_soon(block_in_callback, rows, ms)
        else:
            hold(ms / 1000, rows)  # in a task step


async def timers():
    while True:
        await asyncio.sleep(0.05)


async def main(args):
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    rows = [(i, rng.randrange(1000), rng.random()) for i in range(200)]
    for i in range(6):
        loop.create_task(chain(args.seed + i, rows), name="chain-%d" % i)
    for i in range(2):
        loop.create_task(consume_agens(args.seed + 100 + i), name="agen-%d" % i)
    for i in range(2):
        loop.call_soon(callback_burst, loop, random.Random(args.seed + 200 + i), rows)
    loop.create_task(blocks(args.seed + 300, rows), name="blocks")
    loop.create_task(timers(), name="timers")
    if args.ready:
        tmp = args.ready + ".tmp"
        with open(tmp, "w") as f:
            f.write("ready %d\n" % os.getpid())
        os.replace(tmp, args.ready)
    await asyncio.Event().wait()


def new_loop(uvloop):
    if uvloop:
        import uvloop as uv

        return uv.new_event_loop()
    return asyncio.new_event_loop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--ready", help="write 'ready PID' here once the loop runs")
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if sys.version_info < (3, 8):
        sys.exit("CPython 3.8+")
    loop = new_loop(args.uvloop)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main(args))
    except KeyboardInterrupt:
        pass
