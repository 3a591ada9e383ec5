"""Prints, as JSON, the line table of many real code objects and the interpreter's own line
for every instruction offset: the truth tests/lines.rs checks loopspy's line decoder against.

3.10+: code.co_lines() (what frame.f_lineno and tracebacks use); 3.8-3.9: dis.findlinestarts
(the same walk over co_lnotab that PyCode_Addr2Line does). Offsets are in bytes.
"""
import dis
import json
import sys
import types

import asyncio.base_events
import asyncio.events
import asyncio.tasks
import json.decoder
import json.encoder
import collections
import enum
import inspect


def walk(code, seen):
    if id(code) in seen:
        return
    seen[id(code)] = code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            walk(const, seen)


def module_codes(module):
    # Recompiling the source gives every code object, nested ones included.
    source = inspect.getsource(module)
    return compile(source, module.__file__, "exec")


def truth(code):
    size = len(code.co_code)
    lines = {}
    if hasattr(code, "co_lines"):
        for start, end, line in code.co_lines():
            if line is None:
                continue
            for offset in range(start, end, 2):
                lines[offset] = line
    else:
        starts = list(dis.findlinestarts(code))
        for offset in range(0, size, 2):
            line = None
            for s, l in starts:
                if s <= offset:
                    line = l
                else:
                    break
            if line is not None:
                lines[offset] = line
    return sorted(lines.items())


def main():
    seen = {}
    for module in (asyncio.base_events, asyncio.events, asyncio.tasks, json.decoder, json.encoder,
                   collections, enum, inspect, dis):
        walk(module_codes(module), seen)
    walk(compile(open(__file__).read(), __file__, "exec"), seen)
    out = []
    for code in seen.values():
        table = code.co_linetable if sys.version_info >= (3, 10) else code.co_lnotab
        out.append({
            "name": code.co_name,
            "first_line": code.co_firstlineno,
            "table": table.hex(),
            "lines": truth(code),
        })
    json.dump(out, sys.stdout)


main()
