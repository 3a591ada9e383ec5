#!/usr/bin/env python3
"""Empirical cross-check of out/3.X.txt, run *inside* the interpreter concerned.

usage: python3.X ctypes_check.py [out/3.X.txt]

Part 1 (header cross-check): for a useful subset of the header-derived offsets,
read the interpreter's own objects with ctypes.string_at(id(obj), n) and compare
with values known from Python (id(), len(), hash(), ...). Lines:
    PASS <name> <offset>            the header value matched the live object
    FAIL <name> <offset> <why>
    SKIP <name> <why>

Part 2 (empirical layouts): structs that are private to C modules (the
_asyncio Task/Future objects, functools.partial, the task step/wakeup
callback wrappers) are located by scanning the object's bytes for known id()
values / known state changes. Lines:
    EMP <name> <value>              derived value
    NOTE <text>

Only deterministic data is printed (no addresses), so the output is stable
between runs. Exit status is 1 if any FAIL was printed.

Besides string_at, the script calls a handful of C API functions through
ctypes.pythonapi to learn addresses that no Python object exposes
(PyThreadState_Get, PyInterpreterState_Get, the _PyRuntime symbol).
"""
import asyncio
import contextvars
import ctypes
import dis
import functools
import gc
import os
import struct
import sys
import threading
import types
import weakref

VER = "%d.%d" % sys.version_info[:2]
MINOR = sys.version_info[1]

# ---------------------------------------------------------------------------
# memory helpers (own objects only)


def rd(addr, n):
    return ctypes.string_at(addr, n)


def u64(addr):
    return struct.unpack("<Q", rd(addr, 8))[0]


def i64(addr):
    return struct.unpack("<q", rd(addr, 8))[0]


def u32(addr):
    return struct.unpack("<I", rd(addr, 4))[0]


def i32(addr):
    return struct.unpack("<i", rd(addr, 4))[0]


def u16(addr):
    return struct.unpack("<H", rd(addr, 2))[0]


def u8(addr):
    return rd(addr, 1)[0]


def i8(addr):
    return struct.unpack("<b", rd(addr, 1))[0]


def f64(addr):
    return struct.unpack("<d", rd(addr, 8))[0]


def cstr(addr, n=256):
    b = rd(addr, n)
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# load the header-derived values

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "out", VER + ".txt")
H = {}
DBG_ORDER = []
with open(path) as f:
    for line in f:
        if not line.strip() or line.startswith("#"):
            continue
        k, v = line.split()
        H[k] = int(v)
        if k.startswith("_Py_DebugOffsets."):
            DBG_ORDER.append(k)

RESULTS = {"PASS": 0, "FAIL": 0, "SKIP": 0}


def out(*a):
    print(*a)
    sys.stdout.flush()


def check(name, ok_fn, why=""):
    """ok_fn(off) -> True/False or (bool, detail)."""
    if name not in H:  # field does not exist in this version
        return None
    off = H[name]
    try:
        r = ok_fn(off)
    except Exception as e:  # pragma: no cover - reported
        r = (False, "exception %s: %s" % (type(e).__name__, e))
    detail = ""
    if isinstance(r, tuple):
        r, detail = r
    if r:
        out("PASS", name, off, *( [detail] if detail else []))
        RESULTS["PASS"] += 1
    else:
        out("FAIL", name, off, detail or why)
        RESULTS["FAIL"] += 1
    return bool(r)


def has(*names):
    return all(n in H for n in names)


# ---------------------------------------------------------------------------
# C API access for addresses that no object exposes

api = ctypes.pythonapi
api.PyThreadState_Get.restype = ctypes.c_void_p
api.PyThreadState_GetDict.restype = ctypes.py_object


def tstate_addr():
    return api.PyThreadState_Get()


def interp_addr():
    for fn in ("PyInterpreterState_Get", "_PyInterpreterState_Get"):
        if hasattr(api, fn):
            f = getattr(api, fn)
            f.restype = ctypes.c_void_p
            return f()
    return None


def runtime_addr():
    try:
        return ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
    except (ValueError, AttributeError):
        return None


H_OBJ = H.get("sizeof(PyObject)", 16)
# 3.14+: f_executable, f_funcobj and localsplus are _PyStackRef (tagged)
TAG_MASK = ~H.get("const.Py_TAG_BITS", 0) & 0xFFFFFFFFFFFFFFFF


def sref(v):
    return v & TAG_MASK


# ---------------------------------------------------------------------------
# test objects

class Slotted:
    __slots__ = ("b_slot", "a_slot")

    def __init__(self):
        self.a_slot = "A"
        self.b_slot = "B"


class Plain:
    def __init__(self):
        self.x = [1]
        self.y = "why"
        self.z = 3.5

    def meth(self, a):
        return a


def sample_func(alpha, beta=2):
    gamma = alpha + beta
    return gamma


class StrSub(str):
    pass


def sec(title):
    out("#", "---", title)


def pyint_value(addr):
    """Decode an int object (own objects only) with the header layout."""
    if MINOR >= 12:
        tag = u64(addr + H["PyLongObject.long_value.lv_tag"])
        nd = tag >> H.get("const._PyLong_NON_SIZE_BITS", 3)
        sign = 1 - (tag & 3)
        dig = addr + H["PyLongObject.long_value.ob_digit"]
    else:
        size = i64(addr + H["PyVarObject.ob_size"])
        nd, sign = abs(size), (1 if size > 0 else (-1 if size < 0 else 0))
        dig = addr + H["PyLongObject.ob_digit"]
    shift = H["const.PyLong_SHIFT"]
    v = 0
    for i in range(nd):
        v |= u32(dig + 4 * i) << (shift * i)
    return sign * v


# ===========================================================================
def part1_objects():
    sec("objects, types")
    lst = [object(), "s", 3]
    check("PyObject.ob_type", lambda o: u64(id(lst) + o) == id(list))
    check("PyVarObject.ob_size", lambda o: i64(id(lst) + o) == len(lst))
    check("sizeof(PyObject)", lambda o: o == object.__basicsize__)
    C = Plain
    inst = Plain()
    check("PyTypeObject.tp_name", lambda o: (cstr(u64(id(C) + o)) == "Plain"
                                              and cstr(u64(id(list) + o)) == "list"))
    check("PyTypeObject.tp_basicsize", lambda o: i64(id(C) + o) == C.__basicsize__)
    check("PyTypeObject.tp_itemsize", lambda o: i64(id(tuple) + o) == tuple.__itemsize__)
    check("PyTypeObject.tp_flags", lambda o: u64(id(C) + o) == C.__flags__)
    check("PyTypeObject.tp_weaklistoffset", lambda o: i64(id(C) + o) == C.__weakrefoffset__)
    check("PyTypeObject.tp_dictoffset", lambda o: i64(id(C) + o) == C.__dictoffset__)
    # C.__dict__ is a mappingproxy {PyObject_HEAD; mapping} around tp_dict
    mp = C.__dict__
    check("PyTypeObject.tp_dict", lambda o: u64(id(C) + o) == u64(id(mp) + H_OBJ))
    check("PyTypeObject.tp_mro", lambda o: u64(id(C) + o) == id(C.__mro__))
    check("PyTypeObject.tp_base", lambda o: u64(id(C) + o) == id(C.__base__))
    check("PyHeapTypeObject.ht_name", lambda o: u64(id(C) + o) == id(C.__name__))
    check("PyHeapTypeObject.ht_qualname", lambda o: u64(id(C) + o) == id(C.__qualname__))
    check("sizeof(PyHeapTypeObject)", lambda o: o == type.__basicsize__)

    def slots_ok(o):
        t = u64(id(Slotted) + o)
        n = i64(t + H["PyVarObject.ob_size"])
        ids = {u64(t + H["PyTupleObject.ob_item"] + 8 * i) for i in range(n)}
        return ids == {id(sys.intern("a_slot")), id(sys.intern("b_slot"))}
    check("PyHeapTypeObject.ht_slots", slots_ok)

    def cached_keys_ok(o):
        ck = u64(id(C) + o)
        d = inst.__dict__
        return ck != 0 and u64(id(d) + H["PyDictObject.ma_keys"]) == ck
    check("PyHeapTypeObject.ht_cached_keys", cached_keys_ok)

    # heap type members follow the PyHeapTypeObject
    def members_ok(o):
        m = u64(id(Slotted) + o)
        return m == id(Slotted) + type.__basicsize__
    check("PyTypeObject.tp_members", members_ok)

    sec("member descriptors")
    da = Slotted.__dict__["a_slot"]
    db = Slotted.__dict__["b_slot"]

    def dmember_ok(o):
        md = u64(id(da) + o)
        return cstr(u64(md + H["PyMemberDef.name"])) == "a_slot"
    check("PyMemberDescrObject.d_member", dmember_ok)
    s = Slotted()
    md_a = u64(id(da) + H["PyMemberDescrObject.d_member"])
    md_b = u64(id(db) + H["PyMemberDescrObject.d_member"])

    def moff_ok(o):
        oa, ob = i64(md_a + o), i64(md_b + o)
        return (u64(id(s) + oa) == id(s.a_slot) and u64(id(s) + ob) == id(s.b_slot),
                "a_slot@%d b_slot@%d (slots sorted by name)" % (oa, ob))
    check("PyMemberDef.offset", moff_ok)
    check("PyMemberDef.type", lambda o: i32(md_a + o) == 16)  # T_OBJECT_EX
    check("sizeof(PyMemberDef)", lambda o: abs(md_b - md_a) == o)

    sec("list, tuple, float, bytes, int")
    check("PyListObject.ob_item", lambda o: all(
        u64(u64(id(lst) + o) + 8 * i) == id(x) for i, x in enumerate(lst)))
    tup = (object(), "t", 9)
    check("PyTupleObject.ob_item", lambda o: all(
        u64(id(tup) + o + 8 * i) == id(x) for i, x in enumerate(tup)))
    fl = 1234.5625
    check("PyFloatObject.ob_fval", lambda o: f64(id(fl) + o) == fl)
    bs = b"loopspy-bytes"
    check("PyBytesObject.ob_sval", lambda o: rd(id(bs) + o, len(bs) + 1) == bs + b"\0")
    nums = [0, 1, -1, 12345, -(2 ** 70) - 17, 2 ** 200 + 3]
    if MINOR >= 12:
        check("PyLongObject.long_value.lv_tag", lambda o: all(
            pyint_value(id(n)) == n for n in nums))
        check("PyLongObject.long_value.ob_digit", lambda o: all(
            pyint_value(id(n)) == n for n in nums))
    else:
        check("PyLongObject.ob_digit", lambda o: all(pyint_value(id(n)) == n for n in nums))
    check("const.PyLong_SHIFT", lambda o: o == sys.int_info.bits_per_digit)

    sec("str")
    samples = [("ascii", "hello world", 1, 1), ("latin1", "h\u00e9llo", 1, 0),
               ("ucs2", "h\u20acllo", 2, 0), ("ucs4", "h\U0001F600llo", 4, 0)]

    def state_field(addr, name):
        w = u64(addr + H["PyASCIIObject.state"])
        bit = H["PyASCIIObject.state.%s.bit" % name]
        width = H["PyASCIIObject.state.%s.width" % name]
        return (w >> bit) & ((1 << width) - 1)

    check("PyASCIIObject.length", lambda o: all(
        i64(id(s) + o) == len(s) for _, s, _, _ in samples))
    check("PyASCIIObject.hash", lambda o: all(
        i64(id(s) + o) == hash(s) for _, s, _, _ in samples))
    check("PyASCIIObject.state.kind.bit", lambda o: all(
        state_field(id(s), "kind") == k for _, s, k, _ in samples))
    check("PyASCIIObject.state.ascii.bit", lambda o: all(
        state_field(id(s), "ascii") == a for _, s, _, a in samples))
    check("PyASCIIObject.state.compact.bit", lambda o: all(
        state_field(id(s), "compact") == 1 for _, s, _, _ in samples)
        and state_field(id(StrSub("x")), "compact") == 0)
    interned = sys.intern("loopspy_interned_name")
    check("PyASCIIObject.state.interned.bit", lambda o: state_field(id(interned), "interned") != 0
          and state_field(id("not" + str(len(samples)) + " interned"), "interned") == 0)

    def data_at(s):
        k = state_field(id(s), "kind")
        enc = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[k]
        return s.encode(enc)
    check("sizeof(PyASCIIObject)", lambda o: rd(id(samples[0][1]) + o, len(samples[0][1]))
          == data_at(samples[0][1]))
    check("sizeof(PyCompactUnicodeObject)", lambda o: all(
        rd(id(s) + o, len(data_at(s))) == data_at(s) for _, s, _, a in samples if not a))
    sub = StrSub("legacy \u20ac string")
    check("PyUnicodeObject.data", lambda o: rd(u64(id(sub) + o), len(data_at(sub))) == data_at(sub))

    sec("dict")
    d_str = {"k%d" % i: object() for i in range(5)}
    d_int = {10 ** 6 + i: object() for i in range(5)}
    check("PyDictObject.ma_used", lambda o: i64(id(d_str) + o) == 5)
    check("PyDictObject.ma_values", lambda o: u64(id(d_str) + o) == 0)

    def entries(d):
        """-> list of (key_id, value_id) read via the header layout."""
        k = u64(id(d) + H["PyDictObject.ma_keys"])
        vals = u64(id(d) + H["PyDictObject.ma_values"])
        if "PyDictKeysObject.dk_log2_size" in H:
            nent = i64(k + H["PyDictKeysObject.dk_nentries"])
            lib = u8(k + H["PyDictKeysObject.dk_log2_index_bytes"])
            kind = u8(k + H["PyDictKeysObject.dk_kind"])
            ent = k + H["PyDictKeysObject.dk_indices"] + (1 << lib)
            if kind == H["const.DICT_KEYS_GENERAL"]:
                esz, ko, vo = (H["sizeof(PyDictKeyEntry)"], H["PyDictKeyEntry.me_key"],
                               H["PyDictKeyEntry.me_value"])
            else:
                esz, ko, vo = (H["sizeof(PyDictUnicodeEntry)"], H["PyDictUnicodeEntry.me_key"],
                               H["PyDictUnicodeEntry.me_value"])
        else:
            size = i64(k + H["PyDictKeysObject.dk_size"])
            nent = i64(k + H["PyDictKeysObject.dk_nentries"])
            w = 1 if size <= 0xff else 2 if size <= 0xffff else 4 if size <= 0xffffffff else 8
            ent = k + H["PyDictKeysObject.dk_indices"] + size * w
            esz, ko, vo = (H["sizeof(PyDictKeyEntry)"], H["PyDictKeyEntry.me_key"],
                           H["PyDictKeyEntry.me_value"])
        res = []
        for i in range(nent):
            key = u64(ent + i * esz + ko)
            if vals:
                v = u64(vals + H.get("PyDictValues.values", 0) + 8 * i)
            else:
                v = u64(ent + i * esz + vo)
            if key and v:
                res.append((key, v))
        return res

    def dict_ok(d):
        return sorted(entries(d)) == sorted((id(k), id(v)) for k, v in d.items())
    check("PyDictObject.ma_keys", lambda o: dict_ok(d_str) and dict_ok(d_int))
    check("PyDictKeysObject.dk_nentries", lambda o: dict_ok(d_str) and dict_ok(d_int))
    if "PyDictKeysObject.dk_kind" in H:
        def kind_ok(o):
            ks = u8(u64(id(d_str) + H["PyDictObject.ma_keys"]) + o)
            ki = u8(u64(id(d_int) + H["PyDictObject.ma_keys"]) + o)
            return (ks == H["const.DICT_KEYS_UNICODE"] and ki == H["const.DICT_KEYS_GENERAL"],
                    "str-keys kind=%d int-keys kind=%d" % (ks, ki))
        check("PyDictKeysObject.dk_kind", kind_ok)
        check("sizeof(PyDictUnicodeEntry)", lambda o: dict_ok(d_str))
    check("sizeof(PyDictKeyEntry)", lambda o: dict_ok(d_int))
    # split (instance) dict sharing the class's cached keys
    inst2 = Plain()
    idict = inst2.__dict__
    check("PyDictObject.ma_values", lambda o: u64(id(idict) + o) != 0 and dict_ok(idict),
          "instance dict not split or values mismatch")
    if "PyDictValues.valid" in H:
        def inline_ok(o):
            i3 = Plain()
            dd = i3.__dict__
            vals = u64(id(dd) + H["PyDictObject.ma_values"])
            inline = id(i3) + Plain.__basicsize__
            return (vals == inline and u8(vals + o) == 1 and dict_ok(dd),
                    "vars(obj).ma_values == obj+tp_basicsize, valid=1")
        check("PyDictValues.valid", inline_ok)
        check("PyDictValues.values", lambda o: dict_ok(idict))

    sec("set, weakref, module")
    st = {object() for _ in range(7)}

    def set_ok(o):
        mask = i64(id(st) + H["PySetObject.mask"])
        table = u64(id(st) + H["PySetObject.table"])
        es = H["sizeof(setentry)"]
        keys = {u64(table + i * es + H["setentry.key"]) for i in range(mask + 1)}
        hashes = {u64(table + i * es + H["setentry.hash"]) & 0xFFFFFFFFFFFFFFFF
                  for i in range(mask + 1)}
        want = {id(x) for x in st}
        return want <= keys and {hash(x) & 0xFFFFFFFFFFFFFFFF for x in st} <= hashes
    check("PySetObject.used", lambda o: i64(id(st) + o) == len(st))
    check("PySetObject.fill", lambda o: i64(id(st) + o) >= len(st))
    check("PySetObject.table", set_ok)
    check("sizeof(setentry)", set_ok)
    target = Plain()
    wr = weakref.ref(target)
    check("PyWeakReference.wr_object", lambda o: u64(id(wr) + o) == id(target))
    check("PyModuleObject.md_dict", lambda o: u64(id(os) + o) == id(os.__dict__)
          and u64(id(sys) + o) == id(sys.__dict__))

    sec("methods, functions")
    bm = inst.meth
    check("PyMethodObject.im_func", lambda o: u64(id(bm) + o) == id(Plain.meth))
    check("PyMethodObject.im_self", lambda o: u64(id(bm) + o) == id(inst))
    ap = lst.append
    check("PyCFunctionObject.m_self", lambda o: u64(id(ap) + o) == id(lst))
    check("PyCFunctionObject.m_ml", lambda o: cstr(u64(u64(id(ap) + o)
                                                       + H["PyMethodDef.ml_name"])) == "append")
    check("PyMethodDef.ml_name", lambda o: cstr(u64(u64(id(len) + H["PyCFunctionObject.m_ml"])
                                                    + o)) == "len")
    check("PyCFunctionObject.m_module", lambda o: u64(id(len) + o) == id(len.__module__))
    fn = sample_func
    check("PyFunctionObject.func_code", lambda o: u64(id(fn) + o) == id(fn.__code__))
    check("PyFunctionObject.func_globals", lambda o: u64(id(fn) + o) == id(fn.__globals__))
    check("PyFunctionObject.func_name", lambda o: u64(id(fn) + o) == id(fn.__name__))
    check("PyFunctionObject.func_qualname", lambda o: u64(id(fn) + o) == id(fn.__qualname__))
    check("PyFunctionObject.func_module", lambda o: u64(id(fn) + o) == id(fn.__module__))

    sec("code")
    co = fn.__code__
    check("PyCodeObject.co_argcount", lambda o: i32(id(co) + o) == co.co_argcount)
    check("PyCodeObject.co_flags", lambda o: i32(id(co) + o) == co.co_flags)
    check("PyCodeObject.co_firstlineno", lambda o: i32(id(co) + o) == co.co_firstlineno)
    check("PyCodeObject.co_nlocals", lambda o: i32(id(co) + o) == co.co_nlocals)
    check("PyCodeObject.co_nlocalsplus", lambda o: i32(id(co) + o) == co.co_nlocals)
    check("PyCodeObject.co_filename", lambda o: u64(id(co) + o) == id(co.co_filename))
    check("PyCodeObject.co_name", lambda o: u64(id(co) + o) == id(co.co_name))
    check("PyCodeObject.co_qualname", lambda o: u64(id(co) + o) == id(co.co_qualname))
    check("PyCodeObject.co_code", lambda o: u64(id(co) + o) == id(co.co_code))
    check("PyCodeObject.co_varnames", lambda o: u64(id(co) + o) == id(co.co_varnames))
    check("PyCodeObject.co_lnotab", lambda o: u64(id(co) + o) == id(co.co_lnotab))
    check("PyCodeObject.co_linetable", lambda o: u64(id(co) + o) == id(co.co_linetable))
    check("PyCodeObject.co_exceptiontable", lambda o: u64(id(co) + o) == id(co.co_exceptiontable))

    def lpn_ok(o):
        t = u64(id(co) + o)
        n = i64(t + H["PyVarObject.ob_size"])
        names = [u64(t + H["PyTupleObject.ob_item"] + 8 * i) for i in range(n)]
        return names[:len(co.co_varnames)] == [id(x) for x in co.co_varnames]
    check("PyCodeObject.co_localsplusnames", lpn_ok)

    def adaptive_ok(o):
        # code._co_code_adaptive (3.11+) returns a copy of the live adaptive
        # bytecode, superinstructions and inline-cache counters included
        ad = co._co_code_adaptive
        return (rd(id(co) + o, len(ad)) == ad, "%d bytes == code._co_code_adaptive" % len(ad))
    check("PyCodeObject.co_code_adaptive", adaptive_ok)
    if MINOR >= 11:  # var-sized: tp_basicsize = offsetof(co_code_adaptive)
        check("sizeof(PyCodeObject)", lambda o: type(co).__basicsize__ ==
              H["PyCodeObject.co_code_adaptive"] and o >= type(co).__basicsize__)
    else:
        check("sizeof(PyCodeObject)", lambda o: o == type(co).__basicsize__)
    check("sizeof(_Py_CODEUNIT)", lambda o: o == 2)


# ===========================================================================
def part1_frames():
    sec("thread state, frames")
    ts = tstate_addr()
    tsdict = api.PyThreadState_GetDict()  # creates the dict lazily: call first
    check("PyThreadState.dict", lambda o: u64(ts + o) == id(tsdict))
    check("PyThreadState.thread_id", lambda o: u64(ts + o) == threading.get_ident())
    if hasattr(threading, "get_native_id"):
        check("PyThreadState.native_thread_id", lambda o: u64(ts + o) == threading.get_native_id())
    interp = interp_addr()
    check("PyThreadState.interp", lambda o: interp is not None and u64(ts + o) == interp)

    ctx = contextvars.copy_context()
    seen = []
    ctx.run(lambda: seen.append(u64(tstate_addr() + H["PyThreadState.context"])))
    check("PyThreadState.context", lambda o: seen[0] == id(ctx))

    if interp:
        for name in ("PyInterpreterState.tstate_head", "PyInterpreterState.threads.head"):
            if name in H:
                check(name, lambda o: u64(interp + o) == ts)
        for name in ("PyInterpreterState.modules", "PyInterpreterState.imports.modules"):
            if name in H:
                check(name, lambda o: u64(interp + o) == id(sys.modules))
        check("PyInterpreterState.sysdict", lambda o: u64(interp + o) == id(sys.__dict__))
        import builtins
        check("PyInterpreterState.builtins", lambda o: u64(interp + o) == id(builtins.__dict__))
        check("PyInterpreterState.next", lambda o: u64(interp + o) == 0)
        if "PyInterpreterState.asyncio_tasks_head" in H:
            # empty circular list: head.next == &head (before any thread exited with tasks)
            check("PyInterpreterState.asyncio_tasks_head",
                  lambda o: u64(interp + o) == interp + o)
    rt = runtime_addr()
    if rt and interp:
        check("_PyRuntimeState.interpreters.head", lambda o: u64(rt + o) == interp)
        check("_PyRuntimeState.interpreters.main", lambda o: u64(rt + o) == interp)
        if DBG_ORDER and has("sizeof(_Py_DebugOffsets)"):
            n_u64 = (H["sizeof(_Py_DebugOffsets)"] - 24) // 8
            if n_u64 == len(DBG_ORDER) - 2 and rd(rt, 8) == b"xdebugpy":
                bad = []
                for i, name in enumerate(DBG_ORDER[2:]):
                    if u64(rt + 24 + 8 * i) != H[name]:
                        bad.append(name)
                if u64(rt + 8) != H["_Py_DebugOffsets.version"]:
                    out("NOTE live _Py_DebugOffsets.version 0x%x != header PY_VERSION_HEX 0x%x"
                        % (u64(rt + 8), H["_Py_DebugOffsets.version"]))
                ok = not bad
                check("_PyRuntimeState.debug_offsets", lambda o: (
                    ok, "%d _Py_DebugOffsets values == live _PyRuntime" % len(DBG_ORDER)
                    if ok else "mismatch: " + ",".join(bad)))
            else:
                out("SKIP _Py_DebugOffsets live comparison (layout not all-u64 or no cookie)")
    elif not rt:
        out("SKIP _PyRuntime symbol not found via ctypes.pythonapi")

    # --- the running frame
    if MINOR <= 10:
        f = sys._getframe()
        rd8 = ctypes.c_uint64.from_address  # no Python frame while reading
        check("PyThreadState.frame", lambda o: rd8(ts + o).value == id(sys._getframe()))
        check("PyFrameObject.f_back", lambda o: u64(id(f) + o) == id(f.f_back))
        check("PyFrameObject.f_code", lambda o: u64(id(f) + o) == id(f.f_code))
        check("PyFrameObject.f_globals", lambda o: u64(id(f) + o) == id(f.f_globals))
        check("PyFrameObject.f_builtins", lambda o: u64(id(f) + o) == id(f.f_builtins))

        def gen_fn(a):
            b = a * 2
            yield b
            yield a
        g = gen_fn(21)
        next(g)
        gf = g.gi_frame
        check("PyFrameObject.f_gen", lambda o: u64(id(gf) + o) == id(g))
        # 3.10 counts f_lasti in code units, the Python attribute in bytes
        unit = 2 if MINOR == 10 else 1
        check("PyFrameObject.f_lasti", lambda o: (i32(id(gf) + o) * unit == gf.f_lasti,
                                                  "f_lasti in %s" % ("code units (x2 = f.f_lasti)"
                                                                     if unit == 2 else "bytes")))
        check("PyFrameObject.f_localsplus", lambda o: u64(id(gf) + o) == id(21)
              and u64(id(gf) + o + 8) == id(42))
        gl = sys._getframe(0)
        check("PyFrameObject.f_locals", lambda o: u64(id(gl) + o) in (0, id(gl.f_locals)))
        if "PyFrameObject.f_state" in H:
            check("PyFrameObject.f_state", lambda o: i8(id(gf) + o) == H["const.FRAME_SUSPENDED"])
        # only maintained while tracing: 0 (3.10) or co_firstlineno (<=3.9) otherwise
        def lineno_ok(o):
            raw = i32(id(gf) + o)
            what = {gf.f_lineno: "f.f_lineno", gf.f_code.co_firstlineno: "co_firstlineno",
                    0: "0"}.get(raw)
            return (what is not None, "raw value == %s (not tracing)" % what)
        check("PyFrameObject.f_lineno", lineno_ok)
        return

    # 3.11+: interpreter frames. The current-frame pointer must be read in
    # the frame under test without calling a Python helper (a helper would be
    # the current frame): c_uint64.from_address(...).value is pure C.
    CUR_A = H.get("PyThreadState.current_frame", H.get("PyThreadState.cframe"))
    CUR_B = None if "PyThreadState.current_frame" in H else H["_PyCFrame.current_frame"]
    rd8 = ctypes.c_uint64.from_address

    code_field = "_PyInterpreterFrame.f_executable" if MINOR >= 13 else "_PyInterpreterFrame.f_code"

    def live_frame_checks():
        state = {}

        def inner(x, y):
            fr = sys._getframe()
            i = rd8(ts + CUR_A).value
            if CUR_B is not None:
                i = rd8(i + CUR_B).value
            state.update(i=i, fr=fr, f_fr=u64(id(fr) + H["PyFrameObject.f_frame"]),
                         caller=sys._getframe(1),
                         code=sref(u64(i + H[code_field])),
                         func=sref(u64(i + H.get("_PyInterpreterFrame.f_funcobj",
                                                 H.get("_PyInterpreterFrame.f_func", 0)))),
                         glob=u64(i + H["_PyInterpreterFrame.f_globals"]),
                         fobj=u64(i + H["_PyInterpreterFrame.frame_obj"]),
                         prev=u64(i + H["_PyInterpreterFrame.previous"]),
                         owner=u8(i + H["_PyInterpreterFrame.owner"]),
                         lp0=sref(u64(i + H["_PyInterpreterFrame.localsplus"])),
                         lp1=sref(u64(i + H["_PyInterpreterFrame.localsplus"] + 8)),
                         ip=u64(i + H.get("_PyInterpreterFrame.instr_ptr",
                                          H.get("_PyInterpreterFrame.prev_instr", 0))),
                         x=x, y=y)
            if "_PyInterpreterFrame.stacktop" in H:
                state["stacktop"] = i32(i + H["_PyInterpreterFrame.stacktop"])
            if "_PyInterpreterFrame.stackpointer" in H:
                state["sp"] = u64(i + H["_PyInterpreterFrame.stackpointer"])
            cf = state["caller"]
            state["caller_i"] = u64(id(cf) + H["PyFrameObject.f_frame"])
            state["co"] = inner.__code__
            state["fn"] = inner
            return x
        inner("x-value", "y-value")
        return state
    st = live_frame_checks()
    sn = "PyThreadState.current_frame" if "PyThreadState.current_frame" in H else "_PyCFrame.current_frame"
    check(sn, lambda o: st["i"] == st["f_fr"], "current frame != frame object's f_frame")
    if sn != "PyThreadState.current_frame":
        check("PyThreadState.cframe", lambda o: st["i"] == st["f_fr"])
    check("PyFrameObject.f_frame", lambda o: st["i"] == st["f_fr"])
    check(code_field, lambda o: st["code"] == id(st["co"]))
    for n in ("_PyInterpreterFrame.f_funcobj", "_PyInterpreterFrame.f_func"):
        if n in H:
            check(n, lambda o: st["func"] == id(st["fn"]))
    check("_PyInterpreterFrame.f_globals", lambda o: st["glob"] == id(globals()))
    check("_PyInterpreterFrame.frame_obj", lambda o: st["fobj"] == id(st["fr"]))
    check("_PyInterpreterFrame.previous", lambda o: st["prev"] == st["caller_i"])
    check("_PyInterpreterFrame.owner", lambda o: st["owner"] == H["const.FRAME_OWNED_BY_THREAD"])
    check("_PyInterpreterFrame.localsplus", lambda o: st["lp0"] == id(st["x"])
          and st["lp1"] == id(st["y"]))
    for n in ("_PyInterpreterFrame.instr_ptr", "_PyInterpreterFrame.prev_instr"):
        if n in H:
            base = id(st["co"]) + H["PyCodeObject.co_code_adaptive"]
            check(n, lambda o: base <= st["ip"] < base + len(st["co"].co_code))
    if "stacktop" in st:
        co = st["co"]
        check("_PyInterpreterFrame.stacktop", lambda o: co.co_nlocals <= st["stacktop"]
              <= co.co_nlocals + len(co.co_cellvars) + len(co.co_freevars) + co.co_stacksize + 1)
    if "sp" in st:
        lp = st["i"] + H["_PyInterpreterFrame.localsplus"]
        check("_PyInterpreterFrame.stackpointer", lambda o: lp <= st["sp"]
              < lp + 8 * (st["co"].co_nlocals + st["co"].co_stacksize + 1))


# ===========================================================================
def part1_generators():
    sec("generators, coroutines")
    holder = {}

    def gen_fn(a):
        g = holder["g"]
        holder["running"] = rd(id(g), 128)
        yield a
        yield a + 1

    async def coro_fn(x):
        await Yielder()
        return x

    class Yielder:
        def __await__(self):
            yield "y"

    g = gen_fn(5)
    holder["g"] = g
    created = rd(id(g), 128)
    next(g)
    suspended = rd(id(g), 128)
    list(g)
    finished = rd(id(g), 128)
    running = holder["running"]

    sys.set_coroutine_origin_tracking_depth(2)
    try:
        c = coro_fn(3)
    finally:
        sys.set_coroutine_origin_tracking_depth(0)
    c_created = rd(id(c), 128)
    c.send(None)
    c_susp = rd(id(c), 128)

    def w64(buf, o):
        return struct.unpack_from("<Q", buf, o)[0]

    check("PyGenObject.gi_name", lambda o: u64(id(g) + o) == id(g.__name__))
    check("PyGenObject.gi_qualname", lambda o: u64(id(g) + o) == id(g.__qualname__))
    check("PyCoroObject.cr_name", lambda o: u64(id(c) + o) == id(c.__name__))
    check("PyCoroObject.cr_qualname", lambda o: u64(id(c) + o) == id(c.__qualname__))
    check("PyGenObject.gi_code", lambda o: u64(id(g) + o) == id(g.gi_code))
    check("PyCoroObject.cr_code", lambda o: u64(id(c) + o) == id(c.cr_code))
    check("PyCoroObject.cr_origin", lambda o: u64(id(c) + o) == id(c.cr_origin))
    check("PyCoroObject.cr_origin_or_finalizer", lambda o: u64(id(c) + o) == id(c.cr_origin))
    if MINOR <= 10:
        check("PyGenObject.gi_frame", lambda o: w64(created, o) != 0 and w64(finished, o) == 0)
        check("PyCoroObject.cr_frame", lambda o: u64(id(c) + o) == id(c.cr_frame))
        check("PyGenObject.gi_running", lambda o: running[o] == 1 and suspended[o] == 0)
        return
    # 3.11+
    def st(buf, name):
        return struct.unpack_from("<b", buf, H[name])[0]
    fs = "PyGenObject.gi_frame_state"

    def states(o):
        got = (st(created, fs), st(suspended, fs), st(running, fs), st(finished, fs))
        want = (H["const.FRAME_CREATED"], H["const.FRAME_SUSPENDED"], H["const.FRAME_EXECUTING"])
        done = (H.get("const.FRAME_COMPLETED"), H["const.FRAME_CLEARED"])  # no COMPLETED in 3.15
        ok = got[:3] == want and got[3] in done
        return ok, "created/suspended/executing/finished = %d/%d/%d/%d" % got
    check(fs, states)

    def cstates(o):
        a, b = st(c_created, "PyCoroObject.cr_frame_state"), st(c_susp, "PyCoroObject.cr_frame_state")
        want_b = H.get("const.FRAME_SUSPENDED_YIELD_FROM", H["const.FRAME_SUSPENDED"])
        return (a == H["const.FRAME_CREATED"] and b == want_b,
                "coroutine created=%d awaiting=%d" % (a, b))
    check("PyCoroObject.cr_frame_state", cstates)
    code_field = "_PyInterpreterFrame.f_executable" if MINOR >= 13 else "_PyInterpreterFrame.f_code"

    def iframe_ok(o):
        fr = id(c) + o
        code_ok = sref(u64(fr + H[code_field])) == id(coro_fn.__code__)
        own = u8(fr + H["_PyInterpreterFrame.owner"])
        lp0 = sref(u64(fr + H["_PyInterpreterFrame.localsplus"])) == id(3)
        return (code_ok and own == H["const.FRAME_OWNED_BY_GENERATOR"] and lp0,
                "owner=%d" % own)
    check("PyCoroObject.cr_iframe", iframe_ok)
    check("PyGenObject.gi_iframe", lambda o: sref(u64(id(g) + o + H[code_field]))
          == id(gen_fn.__code__))
    if "_PyInterpreterFrame.f_funcobj" in H:
        check("_PyInterpreterFrame.f_funcobj", lambda o: sref(u64(id(c) + H["PyCoroObject.cr_iframe"]
                                                                 + o)) == id(coro_fn))
    if "const.Py_TAG_BITS" in H:
        raw = u64(id(c) + H["PyCoroObject.cr_iframe"] + H["_PyInterpreterFrame.localsplus"])
        out("NOTE _PyStackRef: suspended coroutine localsplus[0] (int 3, immortal) has tag bits %d;"
            " mask with ~Py_TAG_BITS (%d)" % (raw & H["const.Py_TAG_BITS"], H["const.Py_TAG_BITS"]))
    c.close()


# ===========================================================================
# Part 2: empirical layouts of private C structs


def words(addr, size):
    b = rd(addr, size)
    return [struct.unpack_from("<Q", b, i)[0] for i in range(0, size - 7, 8)]


def find_word(obj, value, size=None, start=None):
    size = size or type(obj).__basicsize__
    start = H_OBJ if start is None else start
    hits = [i * 8 for i, w in enumerate(words(id(obj), size)) if w == value and i * 8 >= start]
    return hits


EMP = {}


def emp(name, value, note=""):
    EMP[name] = value
    out("EMP", name, value, *([note] if note else []))


def emp_one(name, obj, value, size=None, start=None):
    hits = find_word(obj, value, size, start)
    if len(hits) == 1:
        emp(name, hits[0])
        return hits[0]
    out("NOTE", name, "ambiguous/not found: candidates %s" % hits)
    return None


def part2_partial():
    sec("functools.partial (empirical)")

    def target(*a, **k):
        return a, k
    p = functools.partial(target, 1, "two", kw=3)
    out("NOTE functools.partial is %s.%s, basicsize %d" % (
        type(p).__module__, type(p).__qualname__, type(p).__basicsize__))
    emp_one("partial.fn", p, id(target))
    emp_one("partial.args", p, id(p.args))
    emp_one("partial.kw", p, id(p.keywords))
    emp("partial.__basicsize__", type(p).__basicsize__)


ASYNCIO_DEBUG_FIELDS = [
    "asyncio_task_object.size", "asyncio_task_object.task_name",
    "asyncio_task_object.task_awaited_by", "asyncio_task_object.task_is_task",
    "asyncio_task_object.task_awaited_by_is_set", "asyncio_task_object.task_coro",
    "asyncio_task_object.task_node",
    "asyncio_interpreter_state.size", "asyncio_interpreter_state.asyncio_tasks_head",
    "asyncio_thread_state.size", "asyncio_thread_state.asyncio_running_loop",
    "asyncio_thread_state.asyncio_running_task", "asyncio_thread_state.asyncio_tasks_head",
]  # struct _Py_AsyncioModuleDebugOffsets, Modules/_asynciomodule.c (3.14)


def elf_section(path, want):
    """-> bytes of section `want` of an ELF64 file, or None."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def sh(i):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
    stroff = sh(shstrndx)[4]
    for i in range(shnum):
        name, _, _, _, off, size = sh(i)[:6]
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end].decode() == want:
            return data[off:off + size]
    return None


def asyncio_debug_section():
    import _asyncio
    cands = [getattr(_asyncio, "__file__", None), os.path.realpath(sys.executable)]
    try:
        with open("/proc/self/maps") as f:
            cands += sorted({l.split()[-1] for l in f if "libpython" in l})
    except OSError:
        pass
    for c in cands:
        if c and os.path.isfile(c):
            sec_ = elf_section(c, ".AsyncioDebug")
            if sec_:
                return c, sec_
    return None, None


def part2_asyncio():
    sec("asyncio (empirical)")
    import _asyncio
    out("NOTE asyncio.Task is _asyncio.Task: %s; asyncio.Future is _asyncio.Future: %s" % (
        asyncio.Task is _asyncio.Task, asyncio.Future is _asyncio.Future))
    res = {}

    async def waiter(fut):
        res["ctx_in_task"] = u64(tstate_addr() + H["PyThreadState.context"])
        return await fut

    async def idle():
        await asyncio.sleep(3600)

    async def main():
        loop = asyncio.get_running_loop()
        TB = asyncio.Task.__basicsize__
        FB = asyncio.Future.__basicsize__
        emp("Task.__basicsize__", TB)
        emp("Future.__basicsize__", FB)
        if "_PyThreadStateImpl.asyncio_running_loop" in H:
            check("_PyThreadStateImpl.asyncio_running_loop",
                  lambda o: u64(tstate_addr() + o) == id(loop))
        if "_PyThreadStateImpl.asyncio_running_task" in H:
            check("_PyThreadStateImpl.asyncio_running_task",
                  lambda o: u64(tstate_addr() + o) == id(asyncio.current_task()))

        # ---- futures: loop, state, result, callbacks
        f_p, f_c, f_f = loop.create_future(), loop.create_future(), loop.create_future()
        emp_one("Future.fut_loop", f_p, id(loop), FB)
        f_c.cancel()
        result_obj = object()
        f_f.set_result(result_obj)
        bp, bc, bf = rd(id(f_p), FB), rd(id(f_c), FB), rd(id(f_f), FB)
        cand = [o for o in range(H_OBJ, FB - 3, 4)
                if struct.unpack_from("<i", bp, o)[0] == 0
                and struct.unpack_from("<i", bc, o)[0] == 1
                and struct.unpack_from("<i", bf, o)[0] == 2]
        if len(cand) == 1:
            emp("Future.fut_state", cand[0], "(i32)")
            emp("Future.fut_state.PENDING", 0)
            emp("Future.fut_state.CANCELLED", 1)
            emp("Future.fut_state.FINISHED", 2)
        else:
            out("NOTE Future.fut_state candidates (pending=0,cancelled=1,finished=2):", cand)
        emp_one("Future.fut_result", f_f, id(result_obj), FB)

        def cb1(f):
            pass

        def cb2(f):
            pass
        cbctx = contextvars.copy_context()
        f_p.add_done_callback(cb1, context=cbctx)
        emp_one("Future.fut_callback0", f_p, id(cb1), FB)
        emp_one("Future.fut_context0", f_p, id(cbctx), FB)
        before = words(id(f_p), FB)
        f_p.add_done_callback(cb2)
        after = words(id(f_p), FB)
        ch = [i * 8 for i, (a, b) in enumerate(zip(before, after))
              if a == 0 and b != 0 and u64(b + 8) == id(list)]
        if len(ch) == 1:
            emp("Future.fut_callbacks", ch[0], "(list of (callback, context) for callbacks 2..n)")
        else:
            out("NOTE Future.fut_callbacks candidates:", ch)
        exc = ValueError("x")
        f_e = loop.create_future()
        f_e.set_exception(exc)
        emp_one("Future.fut_exception", f_e, id(exc), FB)
        f_e.exception()

        # ---- tasks
        fut = loop.create_future()
        coro = waiter(fut)
        ctx = contextvars.copy_context()
        if MINOR >= 11:
            task = loop.create_task(coro, context=ctx)
        else:
            task = loop.create_task(coro)
        emp_one("Task.fut_loop", task, id(loop), TB)
        emp_one("Task.task_coro", task, id(coro), TB)
        # name: 3.12+ is lazily an int until get_name()
        pre = words(id(task), TB)
        name = task.get_name()
        off = emp_one("Task.task_name", task, id(name), TB)
        if off is not None:
            w = pre[off // 8]
            if w == id(name):
                out("NOTE task_name held the str %r before get_name() (eager)" % name)
            elif u64(w + 8) == id(int):
                out("NOTE task_name held an int (value %d) before get_name(); name %r"
                    % (pyint_value(w), name))
            else:
                out("NOTE task_name held something else before get_name()")
        # ready queue: the handle that create_task scheduled
        h = loop._ready[-1]
        cb = h._callback
        out("NOTE create_task -> loop._ready[-1] is %s, _callback type %s.%s" % (
            type(h).__name__, type(cb).__module__, type(cb).__qualname__))
        tn = type(cb).__name__
        out("NOTE step callback tp_name (as stored in the type object): %r"
            % cstr(u64(id(type(cb)) + H["PyTypeObject.tp_name"])))
        if tn == "TaskStepMethWrapper":
            emp("TaskStepMethWrapper.__basicsize__", type(cb).__basicsize__)
            sw = emp_one("TaskStepMethWrapper.sw_task", cb, id(task))
            sa = [o for o in find_word(cb, 0) if o != sw]
            if len(sa) == 1 and type(cb).__basicsize__ == H_OBJ + 16:
                emp("TaskStepMethWrapper.sw_arg", sa[0], "(NULL for a first step)")
        elif tn == "builtin_function_or_method":
            ms = u64(id(cb) + H["PyCFunctionObject.m_self"])
            ml = cstr(u64(u64(id(cb) + H["PyCFunctionObject.m_ml"]) + H["PyMethodDef.ml_name"]))
            out("NOTE step callback is a builtin method: m_self is the task: %s, ml_name %r, "
                "cb.__self__ is task: %s" % (ms == id(task), ml, cb.__self__ is task))
            emp("TaskStep.callback.m_self", H["PyCFunctionObject.m_self"], "(PyCFunctionObject.m_self == task)")
        else:
            out("NOTE unexpected step callback type; __self__ is task: %s" % (
                getattr(cb, "__self__", None) is task))
        # context
        if MINOR >= 11:
            emp_one("Task.task_context", task, id(ctx), TB)
        await asyncio.sleep(0)  # task runs until it awaits fut
        if MINOR < 11:
            emp_one("Task.task_context", task, res["ctx_in_task"], TB)
        else:
            out("NOTE tstate->context inside the task == task.context: %s" % (res["ctx_in_task"] == id(ctx)))
        emp_one("Task.task_fut_waiter", task, id(fut), TB)
        # wakeup callback registered on the awaited future
        fcb = fut._callbacks[0][0] if fut._callbacks else None
        out("NOTE awaited future's callback type %s.%s" % (type(fcb).__module__, type(fcb).__qualname__))
        out("NOTE wakeup callback tp_name: %r"
            % cstr(u64(id(type(fcb)) + H["PyTypeObject.tp_name"])))
        if type(fcb).__name__ == "TaskWakeupMethWrapper":
            emp("TaskWakeupMethWrapper.__basicsize__", type(fcb).__basicsize__)
            emp_one("TaskWakeupMethWrapper.ww_task", fcb, id(task))
        elif type(fcb).__name__ == "builtin_function_or_method":
            ms = u64(id(fcb) + H["PyCFunctionObject.m_self"])
            ml = cstr(u64(u64(id(fcb) + H["PyCFunctionObject.m_ml"]) + H["PyMethodDef.ml_name"]))
            out("NOTE wakeup callback is a builtin method: m_self is the task: %s, ml_name %r"
                % (ms == id(task), ml))
        if "Future.fut_callback0" in EMP:
            out("NOTE awaited future fut_callback0 == that callback: %s" % (
                u64(id(fut) + EMP["Future.fut_callback0"]) == id(fcb)))
        # must_cancel: cancel a task that has not started yet
        t_a = loop.create_task(idle())
        t_b = loop.create_task(idle())
        t_c = loop.create_task(idle())
        ba = rd(id(t_a), TB)
        num_off = None
        if MINOR >= 11:
            t_c.cancel()
            t_c.cancel()
            bc2 = rd(id(t_c), TB)
            cand2 = [o for o in range(H_OBJ, TB - 3, 4)
                     if struct.unpack_from("<i", ba, o)[0] == 0
                     and struct.unpack_from("<i", bc2, o)[0] == 2]
            if len(cand2) == 1:
                num_off = cand2[0]
                emp("Task.task_num_cancels_requested", num_off, "(int)")
            else:
                out("NOTE Task.task_num_cancels_requested candidates:", cand2)
        # must_cancel: cancel() of a task that has not started yet sets it
        before = rd(id(t_b), TB)
        t_b.cancel()
        after = rd(id(t_b), TB)
        skip = set()
        for w in range(0, TB - 7, 8):  # words that became a known pointer (cancel msg None)
            if struct.unpack_from("<Q", after, w)[0] in (id(None),):
                skip.update(range(w, w + 8))
        if num_off is not None:
            skip.update(range(num_off, num_off + 4))
        # bits that are 0 before and 1 after (an int field up to 3.12, a
        # 1-bit bitfield from 3.13 on)
        bits = [(o, b) for o in range(H_OBJ, TB) if o not in skip
                for b in range(8)
                if not (before[o] >> b) & 1 and (after[o] >> b) & 1]
        if len(bits) == 1:
            o, b = bits[0]
            aligned_int = o % 4 == 0 and b == 0 and struct.unpack_from("<i", after, o)[0] == 1
            emp("Task.task_must_cancel", o, "(byte offset; bit %d; %s)" % (
                b, "int field == 1" if aligned_int else "bitfield"))
            emp("Task.task_must_cancel.bit", b)
        else:
            out("NOTE Task.task_must_cancel candidates (byte, bit):", bits)
        # 3.14+: per-thread task list
        if "_PyThreadStateImpl.asyncio_tasks_head" in H:
            head = tstate_addr() + H["_PyThreadStateImpl.asyncio_tasks_head"]
            live = [task, t_a, t_b, t_c]
            nodes = []
            n = u64(head)
            for _ in range(1000):
                if n == head or n == 0:
                    break
                nodes.append(n)
                n = u64(n)
            offs = set()
            for t in live:
                for nd in nodes:
                    if 0 <= nd - id(t) < TB:
                        offs.add(nd - id(t))
            if len(offs) == 1:
                emp("Task.task_node", offs.pop(), "(llist_node in tstate->asyncio_tasks_head list)")
            else:
                out("NOTE Task.task_node candidates:", sorted(offs))
            check("_PyThreadStateImpl.asyncio_tasks_head", lambda o: len(nodes) >= len(live))
        if MINOR >= 14:
            async def awaiter(other):
                await other
            t_x = loop.create_task(idle())
            t_y = loop.create_task(awaiter(t_x))
            await asyncio.sleep(0)
            emp_one("Task.task_awaited_by", t_x, id(t_y), TB)
            t_x.cancel()
            await asyncio.gather(t_x, t_y, return_exceptions=True)
        if MINOR >= 14:
            sec("AsyncioDebug section (3.14+), compared with header and scan results")
            fpath, raw = asyncio_debug_section()
            if raw is None:
                out("NOTE .AsyncioDebug section not found")
            else:
                out("NOTE .AsyncioDebug found in %s (%d bytes)" % (os.path.basename(fpath), len(raw)))
                vals = struct.unpack_from("<%dQ" % (len(raw) // 8), raw)
                if len(vals) != len(ASYNCIO_DEBUG_FIELDS):
                    out("NOTE unexpected section size; raw values:", vals)
                else:
                    AD = dict(zip(ASYNCIO_DEBUG_FIELDS, vals))
                    for k in ASYNCIO_DEBUG_FIELDS:
                        out("AD", k, AD[k])
                    pairs = [
                        ("asyncio_task_object.size", EMP.get("Task.__basicsize__")),
                        ("asyncio_task_object.task_name", EMP.get("Task.task_name")),
                        ("asyncio_task_object.task_coro", EMP.get("Task.task_coro")),
                        ("asyncio_task_object.task_node", EMP.get("Task.task_node")),
                        ("asyncio_task_object.task_awaited_by", EMP.get("Task.task_awaited_by")),
                        ("asyncio_interpreter_state.size", H.get("sizeof(PyInterpreterState)")),
                        ("asyncio_interpreter_state.asyncio_tasks_head",
                         H.get("PyInterpreterState.asyncio_tasks_head")),
                        ("asyncio_thread_state.size", H.get("sizeof(_PyThreadStateImpl)")),
                        ("asyncio_thread_state.asyncio_running_loop",
                         H.get("_PyThreadStateImpl.asyncio_running_loop")),
                        ("asyncio_thread_state.asyncio_running_task",
                         H.get("_PyThreadStateImpl.asyncio_running_task")),
                        ("asyncio_thread_state.asyncio_tasks_head",
                         H.get("_PyThreadStateImpl.asyncio_tasks_head")),
                    ]
                    for k, v in pairs:
                        tag = "PASS" if v == AD[k] else "FAIL"
                        RESULTS[tag] += 1
                        out(tag, "AsyncioDebug." + k, AD[k], "(header/scan value %s)" % v)
                    t_is = task is not None and u8(id(task) + AD["asyncio_task_object.task_is_task"])
                    out("NOTE byte at task_is_task of a Task = %d" % t_is)
        # states of a task (it is a future)
        fut.set_result("done")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if "Future.fut_state" in EMP:
            out("NOTE finished task fut_state=%d (expect 2)" % i32(id(task) + EMP["Future.fut_state"]))
            emp_one("Task.fut_result", task, id("done"), TB)
        for t in (t_a, t_b, t_c):
            t.cancel()
        await asyncio.gather(t_a, t_b, t_c, return_exceptions=True)

    asyncio.run(main())


def main():
    out("# empirical cross-check, Python %s (%s), header file %s" % (
        sys.version.split()[0], os.path.basename(sys.executable), os.path.basename(path)))
    gc.disable()
    part1_objects()
    part1_frames()
    part1_generators()
    part2_partial()
    part2_asyncio()
    out("# summary: %d PASS, %d FAIL, %d SKIP, %d EMP" % (
        RESULTS["PASS"], RESULTS["FAIL"], RESULTS["SKIP"], len(EMP)))
    return 1 if RESULTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
