/*
 * loopspy layout probe: prints CPython struct offsets/sizes/constants for the
 * headers it is compiled against (x86_64 Linux, GIL build).
 *
 * Build (see run.sh):
 *   gcc -DPy_BUILD_CORE -DPy_BUILD_CORE_MODULE -I<inc> -I<inc>/internal \
 *       -o offsets offsets.c
 * No linking against libpython is needed: everything is offsetof/sizeof or a
 * compile-time constant, evaluated by gcc from the real headers.
 *
 * Output: one "name value" line per field (decimal), plus "#" comment lines.
 *   Type.field            offsetof(Type, field)
 *   sizeof(Type)          sizeof(Type)
 *   const.NAME            value of an enum constant / macro
 *   Type.state.kind.bit   first bit of a bitfield inside its storage unit
 *   Type.state.kind.width width of that bitfield in bits
 *   _Py_DebugOffsets.<path>  value of the field in the static initialiser
 * Fields that do not exist in a version are not printed.
 *
 * Values printed after a "# mirror:" comment do NOT come from installed
 * headers: they come from a mirror struct copied in this file from a CPython
 * source file that is not installed (Objects/dict-common.h 3.8-3.10,
 * Objects/moduleobject.c 3.8-3.9). They are still computed by gcc.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#define V(maj, min) (PY_VERSION_HEX >= (((maj) << 24) | ((min) << 16)))

#if !V(3, 11)
#  include <frameobject.h>
#  include <longintrepr.h>
#endif
#if !V(3, 12)
#  include <structmember.h>
#endif

/* ---- internal headers ---------------------------------------------------- */
#if !V(3, 9)
#  include "pycore_pystate.h"          /* struct _is, _PyRuntimeState (3.8) */
#else
#  include "pycore_interp.h"           /* struct _is */
#  include "pycore_runtime.h"          /* _PyRuntimeState */
#endif
#if V(3, 10)
#  include "pycore_moduleobject.h"     /* PyModuleObject */
#endif
#if V(3, 11)
#  include "pycore_frame.h"            /* _PyInterpreterFrame, struct _frame */
#  include "pycore_code.h"
#  include "pycore_dict.h"             /* PyDictKeysObject, PyDictValues */
#endif
#if V(3, 13)
#  include "pycore_tstate.h"           /* _PyThreadStateImpl */
#  include "pycore_runtime_init.h"     /* _PyRuntimeState_INIT (debug offsets) */
#endif
#if V(3, 14)
#  include "pycore_stackref.h"
#  include "pycore_debug_offsets.h"
#  include "pycore_interpframe_structs.h"
#endif

/* ---- printing helpers ----------------------------------------------------- */
#define PRINT(name, val) printf("%s %lld\n", (name), (long long)(val))
#define O(T, f) PRINT(#T "." #f, offsetof(T, f))
#define ON(name, T, f) PRINT(name, offsetof(T, f))
#define S(T) PRINT("sizeof(" #T ")", sizeof(T))
#define SN(name, T) PRINT("sizeof(" name ")", sizeof(T))
#define C(c) PRINT("const." #c, (c))
#define COMMENT(s) printf("# %s\n", s)

static int lowest_bit(unsigned long long w) {
    for (int i = 0; i < 64; i++)
        if (w >> i & 1ULL) return i;
    return -1;
}
static int popcount64(unsigned long long w) {
    int n = 0;
    while (w) { n += (int)(w & 1ULL); w >>= 1; }
    return n;
}

/* Sets one bitfield of PyASCIIObject.state to all ones in a zeroed struct and
 * reports (relative to offsetof(PyASCIIObject, state)) the first bit and the
 * width of the set bits. */
static volatile unsigned int all_ones = ~0u;
#define STATE_BITS(fld) do {                                                   \
        PyASCIIObject o_;                                                      \
        unsigned long long w_ = 0;                                             \
        memset(&o_, 0, sizeof o_);                                             \
        o_.state.fld = all_ones;                                               \
        memcpy(&w_, (char *)&o_ + offsetof(PyASCIIObject, state),              \
               sizeof(o_.state) < 8 ? sizeof(o_.state) : 8);                   \
        PRINT("PyASCIIObject.state." #fld ".bit", lowest_bit(w_));             \
        PRINT("PyASCIIObject.state." #fld ".width", popcount64(w_));           \
    } while (0)

/* ---- mirrors of structs that are not in the installed headers ------------ */
#if !V(3, 11)
/* Objects/dict-common.h, identical in 3.8, 3.9 and 3.10. */
typedef struct {
    Py_hash_t me_hash;
    PyObject *me_key;
    PyObject *me_value;
} mirror_PyDictKeyEntry;
typedef Py_ssize_t (*mirror_dict_lookup_func)(PyDictObject *mp, PyObject *key,
                                              Py_hash_t hash, PyObject **value_addr);
typedef struct {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    mirror_dict_lookup_func dk_lookup;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
} mirror_PyDictKeysObject;
#endif
#if !V(3, 10)
/* Objects/moduleobject.c (3.8, 3.9); 3.10+ has it in pycore_moduleobject.h */
typedef struct {
    PyObject_HEAD
    PyObject *md_dict;
    struct PyModuleDef *md_def;
    void *md_state;
    PyObject *md_weaklist;
    PyObject *md_name;
} mirror_PyModuleObject;
#endif

/* _Py_DebugOffsets as initialised by CPython (3.13+). run.sh runs
 * gen_dbgoff.py, which writes dbgoff_print.h (one PRINT per struct member) and,
 * for 3.13 where the initialiser only exists inside _PyRuntimeState_INIT(),
 * dbgoff_init.h with LOOPSPY_DEBUG_OFFSETS_INIT. */
#if defined(LOOPSPY_HAVE_DBGOFF_PRINT)
#  if defined(LOOPSPY_HAVE_DBGOFF_INIT)
#    include "dbgoff_init.h"
static const _Py_DebugOffsets dbg = LOOPSPY_DEBUG_OFFSETS_INIT;
#  elif defined(_Py_DebugOffsets_INIT)
static const _Py_DebugOffsets dbg = _Py_DebugOffsets_INIT("xdebugpy");
#  else
#    undef LOOPSPY_HAVE_DBGOFF_PRINT
#  endif
#endif

int main(void) {
    printf("# loopspy layout-probe, headers PY_VERSION %s (hex 0x%08lx)\n",
           PY_VERSION, (unsigned long)PY_VERSION_HEX);
    PRINT("PY_VERSION_HEX", PY_VERSION_HEX);
    PRINT("sizeof(void*)", sizeof(void *));

    /* ---- object header / type ------------------------------------------- */
    S(PyObject);
    O(PyObject, ob_refcnt);
    O(PyObject, ob_type);
    S(PyVarObject);
    O(PyVarObject, ob_size);
    O(PyTypeObject, tp_name);
    O(PyTypeObject, tp_basicsize);
    O(PyTypeObject, tp_itemsize);
    O(PyTypeObject, tp_repr);
    O(PyTypeObject, tp_flags);
    O(PyTypeObject, tp_weaklistoffset);
    O(PyTypeObject, tp_members);
    O(PyTypeObject, tp_base);
    O(PyTypeObject, tp_dict);
    O(PyTypeObject, tp_dictoffset);
    O(PyTypeObject, tp_mro);
    S(PyTypeObject);
    O(PyHeapTypeObject, ht_name);
    O(PyHeapTypeObject, ht_slots);
    O(PyHeapTypeObject, ht_qualname);
    O(PyHeapTypeObject, ht_cached_keys);
#if V(3, 9)
    O(PyHeapTypeObject, ht_module);
#endif
    S(PyHeapTypeObject);
    C(Py_TPFLAGS_HEAPTYPE);
#ifdef Py_TPFLAGS_MANAGED_DICT
    C(Py_TPFLAGS_MANAGED_DICT);
#endif
#ifdef Py_TPFLAGS_MANAGED_WEAKREF
    C(Py_TPFLAGS_MANAGED_WEAKREF);
#endif
#ifdef Py_TPFLAGS_INLINE_VALUES
    C(Py_TPFLAGS_INLINE_VALUES);
#endif
#ifdef MANAGED_DICT_OFFSET
    C(MANAGED_DICT_OFFSET);
#endif
#ifdef MANAGED_WEAKREF_OFFSET
    C(MANAGED_WEAKREF_OFFSET);
#endif

    /* ---- list / tuple / float / long ------------------------------------ */
    O(PyListObject, ob_item);
    O(PyListObject, allocated);
    O(PyTupleObject, ob_item);
#if V(3, 14)
    O(PyTupleObject, ob_hash);
#endif
    O(PyFloatObject, ob_fval);
    O(PyBytesObject, ob_sval);
#if V(3, 12)
    ON("PyLongObject.long_value.lv_tag", PyLongObject, long_value.lv_tag);
    ON("PyLongObject.long_value.ob_digit", PyLongObject, long_value.ob_digit);
#  ifdef _PyLong_NON_SIZE_BITS
    C(_PyLong_NON_SIZE_BITS);
#  endif
#  ifdef SIGN_MASK
    C(SIGN_MASK);
#  endif
#else
    O(PyLongObject, ob_digit);
#endif
    C(PyLong_SHIFT);
    PRINT("sizeof(digit)", sizeof(digit));

    /* ---- str ------------------------------------------------------------- */
    O(PyASCIIObject, length);
    O(PyASCIIObject, hash);
    O(PyASCIIObject, state);
    S(PyASCIIObject);
#if !V(3, 12)
    O(PyASCIIObject, wstr);
#endif
    O(PyCompactUnicodeObject, utf8_length);
    O(PyCompactUnicodeObject, utf8);
    S(PyCompactUnicodeObject);
    O(PyUnicodeObject, data);
    STATE_BITS(interned);
    STATE_BITS(kind);
    STATE_BITS(compact);
    STATE_BITS(ascii);
#if !V(3, 12)
    STATE_BITS(ready);
#endif
#if V(3, 12)
    STATE_BITS(statically_allocated);
#endif

    /* ---- dict ----------------------------------------------------------- */
    O(PyDictObject, ma_used);
#if !V(3, 14)
    /* 3.12/3.13 keep it (deprecated); gone in 3.14 */
    _Pragma("GCC diagnostic push")
    _Pragma("GCC diagnostic ignored \"-Wdeprecated-declarations\"")
    O(PyDictObject, ma_version_tag);
    _Pragma("GCC diagnostic pop")
#endif
    O(PyDictObject, ma_keys);
    O(PyDictObject, ma_values);
    S(PyDictObject);
#if V(3, 11)
    O(PyDictKeysObject, dk_refcnt);
    O(PyDictKeysObject, dk_log2_size);
    O(PyDictKeysObject, dk_log2_index_bytes);
    O(PyDictKeysObject, dk_kind);
    O(PyDictKeysObject, dk_version);
    O(PyDictKeysObject, dk_usable);
    O(PyDictKeysObject, dk_nentries);
    O(PyDictKeysObject, dk_indices);
    S(PyDictKeysObject);
    S(PyDictKeyEntry);
    O(PyDictKeyEntry, me_hash);
    O(PyDictKeyEntry, me_key);
    O(PyDictKeyEntry, me_value);
    S(PyDictUnicodeEntry);
    O(PyDictUnicodeEntry, me_key);
    O(PyDictUnicodeEntry, me_value);
    C(DICT_KEYS_GENERAL);
    C(DICT_KEYS_UNICODE);
    C(DICT_KEYS_SPLIT);
#  if V(3, 13)
    O(PyDictValues, capacity);
    O(PyDictValues, size);
    O(PyDictValues, embedded);
    O(PyDictValues, valid);
#  endif
    O(PyDictValues, values);
#  ifdef SHARED_KEYS_MAX_SIZE
    C(SHARED_KEYS_MAX_SIZE);
#  endif
#else
    COMMENT("mirror: PyDictKeysObject/PyDictKeyEntry from Objects/dict-common.h "
            "(not installed); values computed by gcc from a copy of that struct");
    ON("PyDictKeysObject.dk_refcnt", mirror_PyDictKeysObject, dk_refcnt);
    ON("PyDictKeysObject.dk_size", mirror_PyDictKeysObject, dk_size);
    ON("PyDictKeysObject.dk_lookup", mirror_PyDictKeysObject, dk_lookup);
    ON("PyDictKeysObject.dk_usable", mirror_PyDictKeysObject, dk_usable);
    ON("PyDictKeysObject.dk_nentries", mirror_PyDictKeysObject, dk_nentries);
    ON("PyDictKeysObject.dk_indices", mirror_PyDictKeysObject, dk_indices);
    SN("PyDictKeyEntry", mirror_PyDictKeyEntry);
    ON("PyDictKeyEntry.me_hash", mirror_PyDictKeyEntry, me_hash);
    ON("PyDictKeyEntry.me_key", mirror_PyDictKeyEntry, me_key);
    ON("PyDictKeyEntry.me_value", mirror_PyDictKeyEntry, me_value);
    COMMENT("end mirror");
#endif

    /* ---- set / weakref / module / descriptors ---------------------------- */
    O(PySetObject, fill);
    O(PySetObject, used);
    O(PySetObject, mask);
    O(PySetObject, table);
    S(setentry);
    O(setentry, key);
    O(setentry, hash);
    O(PyWeakReference, wr_object);
#if V(3, 10)
    O(PyModuleObject, md_dict);
#  if !V(3, 15)
    O(PyModuleObject, md_def);
#  else
    O(PyModuleObject, md_token);
#  endif
    O(PyModuleObject, md_state);
    O(PyModuleObject, md_name);
#else
    COMMENT("mirror: PyModuleObject from Objects/moduleobject.c (not installed)");
    ON("PyModuleObject.md_dict", mirror_PyModuleObject, md_dict);
    ON("PyModuleObject.md_def", mirror_PyModuleObject, md_def);
    ON("PyModuleObject.md_state", mirror_PyModuleObject, md_state);
    ON("PyModuleObject.md_name", mirror_PyModuleObject, md_name);
    COMMENT("end mirror");
#endif
    O(PyMemberDescrObject, d_member);
    O(PyMemberDef, name);
    O(PyMemberDef, type);
    O(PyMemberDef, offset);
    O(PyMemberDef, flags);
    S(PyMemberDef);

    /* ---- methods / functions --------------------------------------------- */
    O(PyMethodObject, im_func);
    O(PyMethodObject, im_self);
    O(PyCFunctionObject, m_ml);
    O(PyCFunctionObject, m_self);
    O(PyCFunctionObject, m_module);
    O(PyMethodDef, ml_name);
    O(PyMethodDef, ml_meth);
    O(PyFunctionObject, func_code);
    O(PyFunctionObject, func_globals);
    O(PyFunctionObject, func_name);
    O(PyFunctionObject, func_qualname);
    O(PyFunctionObject, func_module);
    S(PyFunctionObject);

    /* ---- code ----------------------------------------------------------- */
    O(PyCodeObject, co_argcount);
    O(PyCodeObject, co_flags);
    O(PyCodeObject, co_firstlineno);
    O(PyCodeObject, co_nlocals);
#if V(3, 11)
    O(PyCodeObject, co_nlocalsplus);
    O(PyCodeObject, co_localsplusnames);
    O(PyCodeObject, co_localspluskinds);
    O(PyCodeObject, co_qualname);
    O(PyCodeObject, co_exceptiontable);
    O(PyCodeObject, co_code_adaptive);
#  if !V(3, 12)
    O(PyCodeObject, _co_code);       /* 3.11: cached co_code bytes, may be NULL */
#  endif
#else
    O(PyCodeObject, co_code);
    O(PyCodeObject, co_varnames);
#endif
#if V(3, 12)
    O(PyCodeObject, co_framesize);
#endif
    O(PyCodeObject, co_filename);
    O(PyCodeObject, co_name);
#if V(3, 10)
    O(PyCodeObject, co_linetable);
#else
    O(PyCodeObject, co_lnotab);
#endif
#if V(3, 14) && defined(Py_GIL_DISABLED)
    O(PyCodeObject, co_tlbc);
#endif
    S(PyCodeObject);
    S(_Py_CODEUNIT);

    /* ---- frames --------------------------------------------------------- */
#if !V(3, 11)
    O(PyThreadState, frame);
#  if V(3, 10)
    O(PyThreadState, cframe);
#  endif
    O(PyFrameObject, f_back);
    O(PyFrameObject, f_code);
    O(PyFrameObject, f_builtins);
    O(PyFrameObject, f_globals);
    O(PyFrameObject, f_locals);
    O(PyFrameObject, f_valuestack);
#  if !V(3, 10)
    O(PyFrameObject, f_stacktop);
#  else
    O(PyFrameObject, f_stackdepth);
    O(PyFrameObject, f_state);
#  endif
    O(PyFrameObject, f_gen);
    O(PyFrameObject, f_lasti);
    O(PyFrameObject, f_lineno);
    O(PyFrameObject, f_localsplus);
    S(PyFrameObject);
#  if V(3, 10)
    C(FRAME_CREATED);
    C(FRAME_SUSPENDED);
    C(FRAME_EXECUTING);
    C(FRAME_RETURNED);
    C(FRAME_UNWINDING);
    C(FRAME_RAISED);
    C(FRAME_CLEARED);
#  endif
#else /* 3.11+ */
#  if !V(3, 13)
    O(PyThreadState, cframe);
    O(_PyCFrame, current_frame);
    O(_PyCFrame, previous);
#  else
    O(PyThreadState, current_frame);
#  endif
#  if V(3, 13)
    O(_PyInterpreterFrame, f_executable);
#  else
    O(_PyInterpreterFrame, f_code);
#  endif
#  if V(3, 12)
    O(_PyInterpreterFrame, f_funcobj);
#  else
    O(_PyInterpreterFrame, f_func);
#  endif
    O(_PyInterpreterFrame, f_globals);
    O(_PyInterpreterFrame, f_builtins);
    O(_PyInterpreterFrame, f_locals);
    O(_PyInterpreterFrame, frame_obj);
    O(_PyInterpreterFrame, previous);
#  if V(3, 13)
    O(_PyInterpreterFrame, instr_ptr);
#  else
    O(_PyInterpreterFrame, prev_instr);
#  endif
#  if V(3, 14)
    O(_PyInterpreterFrame, stackpointer);
#    ifdef Py_GIL_DISABLED
    O(_PyInterpreterFrame, tlbc_index);
#    endif
#  else
    O(_PyInterpreterFrame, stacktop);
#  endif
#  if V(3, 12)
    O(_PyInterpreterFrame, return_offset);
#  else
    O(_PyInterpreterFrame, is_entry);
#  endif
    O(_PyInterpreterFrame, owner);
#  if V(3, 14)
    O(_PyInterpreterFrame, visited);
#  endif
    O(_PyInterpreterFrame, localsplus);
    S(_PyInterpreterFrame);
    C(FRAME_OWNED_BY_THREAD);
    C(FRAME_OWNED_BY_GENERATOR);
    C(FRAME_OWNED_BY_FRAME_OBJECT);
#  if V(3, 12)
#    if V(3, 14)
    C(FRAME_OWNED_BY_INTERPRETER);
#    endif
#    if !V(3, 15)
    C(FRAME_OWNED_BY_CSTACK);     /* 3.12/3.13: 3, 3.14: 4, gone in 3.15 */
#    endif
#  endif
    /* the "frame object" wrapper (struct _frame) */
    O(PyFrameObject, f_back);
    O(PyFrameObject, f_frame);
    O(PyFrameObject, f_trace);
    O(PyFrameObject, f_lineno);
    O(PyFrameObject, _f_frame_data);
    S(PyFrameObject);
    /* generator frame states */
    C(FRAME_CREATED);
    C(FRAME_SUSPENDED);
#  if V(3, 13)
    C(FRAME_SUSPENDED_YIELD_FROM);
#  endif
#  if V(3, 15)
    C(FRAME_SUSPENDED_YIELD_FROM_LOCKED);
#  endif
    C(FRAME_EXECUTING);
#  if !V(3, 15)
    C(FRAME_COMPLETED);           /* gone in 3.15 (values renumbered) */
#  endif
    C(FRAME_CLEARED);
#endif
#if V(3, 14) && defined(Py_TAG_BITS)
    C(Py_TAG_BITS);
#  ifdef Py_TAG_DEFERRED
    C(Py_TAG_DEFERRED);
#  endif
#  ifdef Py_TAG_REFCNT
    C(Py_TAG_REFCNT);
#  endif
#  ifdef Py_INT_TAG
    C(Py_INT_TAG);
#  endif
#  ifdef PyStackRef_NULL_BITS
    C(PyStackRef_NULL_BITS);
#  endif
    S(_PyStackRef);
#endif

    /* ---- generators / coroutines ---------------------------------------- */
#if !V(3, 11)
    O(PyGenObject, gi_frame);
#  if !V(3, 10)
    O(PyGenObject, gi_running);
#  endif
#endif
#if !V(3, 12)
    O(PyGenObject, gi_code);
#endif
    O(PyGenObject, gi_weakreflist);
    O(PyGenObject, gi_name);
    O(PyGenObject, gi_qualname);
    O(PyGenObject, gi_exc_state);
#if V(3, 11)
    O(PyGenObject, gi_origin_or_finalizer);
    O(PyGenObject, gi_hooks_inited);
    O(PyGenObject, gi_closed);
    O(PyGenObject, gi_running_async);
    O(PyGenObject, gi_frame_state);
    O(PyGenObject, gi_iframe);
#endif
    S(PyGenObject);
#if !V(3, 11)
    O(PyCoroObject, cr_frame);
#  if !V(3, 10)
    O(PyCoroObject, cr_running);
#  endif
#endif
#if !V(3, 12)
    O(PyCoroObject, cr_code);
#endif
    O(PyCoroObject, cr_weakreflist);
    O(PyCoroObject, cr_name);
    O(PyCoroObject, cr_qualname);
#if V(3, 11)
    O(PyCoroObject, cr_origin_or_finalizer);
    O(PyCoroObject, cr_frame_state);
    O(PyCoroObject, cr_iframe);
#else
    O(PyCoroObject, cr_origin);
#endif
    S(PyCoroObject);

    /* ---- thread state ----------------------------------------------------- */
    O(PyThreadState, prev);
    O(PyThreadState, next);
    O(PyThreadState, interp);
    O(PyThreadState, dict);
    O(PyThreadState, thread_id);
#if V(3, 11)
    O(PyThreadState, native_thread_id);
    O(PyThreadState, datastack_chunk);
#endif
    O(PyThreadState, context);
    O(PyThreadState, id);
    S(PyThreadState);
#if V(3, 13)
    O(_PyThreadStateImpl, asyncio_running_loop);
#  if V(3, 14)
    O(_PyThreadStateImpl, asyncio_running_task);
    O(_PyThreadStateImpl, asyncio_tasks_head);
#  endif
    S(_PyThreadStateImpl);
#endif

    /* ---- interpreter / runtime ------------------------------------------- */
    O(PyInterpreterState, next);
#if V(3, 11)
    ON("PyInterpreterState.threads.head", PyInterpreterState, threads.head);
#  if V(3, 14)
    ON("PyInterpreterState.threads.main", PyInterpreterState, threads.main);
#  endif
#else
    O(PyInterpreterState, tstate_head);
#endif
#if V(3, 12)
    ON("PyInterpreterState.imports.modules", PyInterpreterState, imports.modules);
#else
    O(PyInterpreterState, modules);
#endif
    O(PyInterpreterState, sysdict);
    O(PyInterpreterState, builtins);
#if V(3, 14)
    O(PyInterpreterState, asyncio_tasks_head);
#endif
    S(PyInterpreterState);
    ON("_PyRuntimeState.interpreters.head", _PyRuntimeState, interpreters.head);
    ON("_PyRuntimeState.interpreters.main", _PyRuntimeState, interpreters.main);
#if V(3, 13)
    O(_PyRuntimeState, debug_offsets);
    S(_Py_DebugOffsets);
#endif
    S(_PyRuntimeState);

    /* ---- garbage collector state (loopspy: GC pauses) --------------------- */
#if V(3, 9)
    ON("PyInterpreterState.gc", PyInterpreterState, gc);
#else
    ON("_PyRuntimeState.gc", _PyRuntimeState, gc);
#endif
    ON("_gc_runtime_state.collecting", struct _gc_runtime_state, collecting);
    ON("_gc_runtime_state.generation_stats", struct _gc_runtime_state, generation_stats);
    ON("_gc_runtime_state.generations", struct _gc_runtime_state, generations);
    SN("gc_generation", struct gc_generation);
    ON("gc_generation.count", struct gc_generation, count);
#if !V(3, 15)
    SN("gc_generation_stats", struct gc_generation_stats);
    ON("gc_generation_stats.collections", struct gc_generation_stats, collections);
#else
    ON("_gc_runtime_state.frame", struct _gc_runtime_state, frame);
#endif
    SN("_gc_runtime_state", struct _gc_runtime_state);

    /* ---- _Py_DebugOffsets initialiser values (3.13+) ---------------------- */
#if defined(LOOPSPY_HAVE_DBGOFF_PRINT)
    printf("# _Py_DebugOffsets initialiser values (cookie \"%.8s\")\n", dbg.cookie);
    PRINT("_Py_DebugOffsets.version", dbg.version);
    PRINT("_Py_DebugOffsets.free_threaded", dbg.free_threaded);
#  include "dbgoff_print.h"   /* generated by run.sh from the struct definition */
#endif
    return 0;
}
