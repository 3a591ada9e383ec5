"""A target whose every name is hostile: terminal escapes (an OSC title, a screen clear), a
newline that would forge a report line, markup, a NUL, a lone surrogate (what invalid UTF-8
decodes to with surrogateescape), a bidi override, an XML non-character, a 10 kB name; and a
callback that blocks at the bottom of 3,000 recursive frames.

    hostile.py TRUTH.json [--uvloop] [--hold deep|hostile]

Its thread, a task, a function and a source file carry the hostile name. It cycles through
blocks of BLOCK seconds: a callback named HOSTILE (in a file named with escapes), a task
named HOSTILE whose coroutine is named HOSTILE too, a function named with 10,240 characters,
and a callback 3,000 frames deep. With --hold, the named block lasts until the process is
killed (for one-shot looks). Truth: the names, as the target has them.
"""

import asyncio
import sys
import threading
import time
import types

import truth

ESC = "\x1b]0;pwned\x07\x1b[2J"
NEWLINE = "evil\nPID 1: forged line"
MARKUP = "<script>alert('x')</script> & \"q\""
NUL = "nul\x00byte"
SURROGATE = "lone\udcffsurrogate"
BIDI = "abc\u202ecba"
NONCHAR = "x\ufffey"
HOSTILE = ESC + NEWLINE + MARKUP + NUL + SURROGATE + BIDI + NONCHAR
LONG = "L" * 10240
DEPTH = 3000
BLOCK = 0.3

HOLD = sys.argv[sys.argv.index("--hold") + 1] if "--hold" in sys.argv else None


def renamed(fn, name):
    """`fn` with its code's name (and qualified name, 3.11+) replaced."""
    code = fn.__code__
    kw = {"co_name": name}
    if sys.version_info >= (3, 11):
        kw["co_qualname"] = name
    new = types.FunctionType(code.replace(**kw), fn.__globals__, name)
    new.__qualname__ = name
    return new


# A function whose source file is named with escapes.
_ns = {}
exec(compile("def file_blocker(seconds):\n    import time\n    time.sleep(seconds)\n", "/tmp/" + ESC + NEWLINE + ".py", "exec"), _ns)
file_blocker = _ns["file_blocker"]


def seconds():
    return 3600.0 if HOLD else BLOCK


def _hostile_callback():
    if HOLD == "hostile":
        write_truth()
    file_blocker(seconds())


def _long_callback():
    time.sleep(BLOCK)


def recurse(n):
    if n == 0:
        if HOLD == "deep":
            write_truth()
        time.sleep(seconds())
        return 0
    return recurse(n - 1) + 1


def deep_callback():
    recurse(DEPTH)


async def _hostile_coroutine():
    time.sleep(BLOCK)


hostile_callback = renamed(_hostile_callback, HOSTILE)
long_callback = renamed(_long_callback, LONG)
hostile_coroutine = renamed(_hostile_coroutine, HOSTILE)


def write_truth():
    loop = asyncio.get_event_loop()
    facts = truth.loop_facts(loop)
    facts.update(hostile=HOSTILE, long=LONG, depth=DEPTH, hold=HOLD)
    # As a reader outside sees them: a lone surrogate is no character (JSON cannot hold it).
    shown = lambda v: "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in v) if isinstance(v, str) else v
    facts = {k: shown(v) for k, v in facts.items()}
    truth.write_truth(facts)


async def main():
    loop = asyncio.get_running_loop()
    threading.current_thread().name = HOSTILE
    # Tasks that wait forever, one named HOSTILE, one with the 10 kB name.
    forever = loop.create_future()
    for name in (HOSTILE, LONG):
        t = loop.create_task(asyncio.wait([forever]))
        t.set_name(name)
    await asyncio.sleep(0.3)
    if HOLD == "deep":
        loop.call_soon(deep_callback)
    elif HOLD == "hostile":
        loop.call_soon(hostile_callback)
    else:
        loop.call_later(0.05, write_truth)
    while True:
        loop.call_soon(hostile_callback)
        await asyncio.sleep(0.3)
        task = loop.create_task(hostile_coroutine())
        task.set_name(HOSTILE)
        await task
        await asyncio.sleep(0.3)
        loop.call_soon(long_callback)
        await asyncio.sleep(0.3)
        loop.call_soon(deep_callback)
        await asyncio.sleep(0.3)


if __name__ == "__main__":
    sys.setrecursionlimit(DEPTH + 1000)
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
