//! Where CPython 3.13+ publishes its own layout for debuggers: the positions of the fields
//! loopspy uses inside `_Py_DebugOffsets` (at the start of `_PyRuntime`, section
//! `.PyRuntime`) and inside 3.14+'s `_Py_AsyncioModuleDebugOffsets` (section
//! `.AsyncioDebug`). The struct grows with every version, so each version has its own row.
//! Names are CPython's own member paths; `tests/layout_tables.rs` checks every position
//! against `tools/layout-probe/out/3.X.txt`.

use super::PyVersion;

/// `_Py_DebugOffsets` starts with this cookie.
pub const COOKIE: &[u8; 8] = b"xdebugpy";
pub const VERSION_AT: u64 = 8;
pub const FREE_THREADED_AT: u64 = 16;

const PY313: &[(&str, u64)] = &[
    ("runtime_state.interpreters_head", 40),
    ("interpreter_state.threads_head", 72),
    ("interpreter_state.imports_modules", 88),
    ("interpreter_state.gc", 80),
    ("thread_state.next", 168),
    ("thread_state.interp", 176),
    ("thread_state.current_frame", 184),
    ("thread_state.thread_id", 192),
    ("thread_state.native_thread_id", 200),
    ("interpreter_frame.previous", 232),
    ("interpreter_frame.executable", 240),
    ("interpreter_frame.localsplus", 256),
    ("interpreter_frame.owner", 264),
    ("code_object.filename", 280),
    ("code_object.name", 288),
    ("code_object.qualname", 296),
    ("code_object.firstlineno", 312),
    ("code_object.localsplusnames", 328),
    ("pyobject.size", 352),
    ("pyobject.ob_type", 360),
    ("type_object.tp_name", 376),
    ("type_object.tp_flags", 392),
    ("tuple_object.ob_item", 408),
    ("tuple_object.ob_size", 416),
    ("list_object.ob_item", 432),
    ("list_object.ob_size", 440),
    ("dict_object.ma_keys", 456),
    ("dict_object.ma_values", 464),
    ("float_object.ob_fval", 480),
    ("long_object.lv_tag", 496),
    ("long_object.ob_digit", 504),
    ("unicode_object.state", 544),
    ("unicode_object.length", 552),
    ("unicode_object.asciiobject_size", 560),
    ("gc.collecting", 576),
];

const PY314: &[(&str, u64)] = &[
    ("runtime_state.interpreters_head", 40),
    ("interpreter_state.threads_head", 72),
    ("interpreter_state.imports_modules", 96),
    ("interpreter_state.gc", 88),
    ("thread_state.next", 192),
    ("thread_state.interp", 200),
    ("thread_state.current_frame", 208),
    ("thread_state.thread_id", 216),
    ("thread_state.native_thread_id", 224),
    ("interpreter_frame.previous", 256),
    ("interpreter_frame.executable", 264),
    ("interpreter_frame.localsplus", 280),
    ("interpreter_frame.owner", 288),
    ("code_object.filename", 320),
    ("code_object.name", 328),
    ("code_object.qualname", 336),
    ("code_object.firstlineno", 352),
    ("code_object.localsplusnames", 368),
    ("pyobject.size", 400),
    ("pyobject.ob_type", 408),
    ("type_object.tp_name", 424),
    ("type_object.tp_flags", 440),
    ("tuple_object.ob_item", 456),
    ("tuple_object.ob_size", 464),
    ("list_object.ob_item", 480),
    ("list_object.ob_size", 488),
    ("set_object.used", 504),
    ("set_object.table", 512),
    ("set_object.mask", 520),
    ("dict_object.ma_keys", 536),
    ("dict_object.ma_values", 544),
    ("float_object.ob_fval", 560),
    ("long_object.lv_tag", 576),
    ("long_object.ob_digit", 584),
    ("unicode_object.state", 624),
    ("unicode_object.length", 632),
    ("unicode_object.asciiobject_size", 640),
    ("gc.collecting", 656),
    ("gen_object.gi_name", 672),
];

const PY315: &[(&str, u64)] = &[
    ("runtime_state.interpreters_head", 40),
    ("interpreter_state.threads_head", 72),
    ("interpreter_state.imports_modules", 96),
    ("interpreter_state.gc", 88),
    ("thread_state.next", 192),
    ("thread_state.interp", 200),
    ("thread_state.current_frame", 208),
    ("thread_state.base_frame", 216),
    ("thread_state.thread_id", 240),
    ("thread_state.native_thread_id", 248),
    ("interpreter_frame.previous", 320),
    ("interpreter_frame.executable", 328),
    ("interpreter_frame.localsplus", 344),
    ("interpreter_frame.owner", 352),
    ("code_object.filename", 384),
    ("code_object.name", 392),
    ("code_object.qualname", 400),
    ("code_object.firstlineno", 416),
    ("code_object.localsplusnames", 432),
    ("pyobject.size", 464),
    ("pyobject.ob_type", 472),
    ("type_object.tp_name", 488),
    ("type_object.tp_flags", 504),
    ("type_object.tp_basicsize", 512),
    ("type_object.tp_dictoffset", 520),
    ("heap_type_object.ht_cached_keys", 536),
    ("tuple_object.ob_item", 552),
    ("tuple_object.ob_size", 560),
    ("list_object.ob_item", 576),
    ("list_object.ob_size", 584),
    ("set_object.used", 600),
    ("set_object.table", 608),
    ("set_object.mask", 616),
    ("dict_object.ma_keys", 632),
    ("dict_object.ma_values", 640),
    ("float_object.ob_fval", 656),
    ("long_object.lv_tag", 672),
    ("long_object.ob_digit", 680),
    ("unicode_object.state", 720),
    ("unicode_object.length", 728),
    ("unicode_object.asciiobject_size", 736),
    ("unicode_object.compactunicodeobject_size", 744),
    ("gc.collecting", 760),
    ("gen_object.gi_name", 800),
];

/// Field positions inside `_Py_DebugOffsets` for a version, if it publishes one.
pub fn fields(v: PyVersion) -> Option<&'static [(&'static str, u64)]> {
    match (v.major, v.minor) {
        (3, 13) => Some(PY313),
        (3, 14) => Some(PY314),
        (3, 15) => Some(PY315),
        _ => None,
    }
}

/// `_Py_AsyncioModuleDebugOffsets` (3.14+, the same shape in 3.14 and 3.15): 13 u64s.
pub const ASYNCIO_SIZE: u64 = 104;
pub const ASYNCIO_FIELDS: &[(&str, u64)] = &[
    ("asyncio_task_object.task_name", 8),
    ("asyncio_task_object.task_awaited_by", 16),
    ("asyncio_task_object.task_is_task", 24),
    ("asyncio_task_object.task_awaited_by_is_set", 32),
    ("asyncio_task_object.task_coro", 40),
    ("asyncio_task_object.task_node", 48),
    ("asyncio_interpreter_state.asyncio_tasks_head", 64),
    ("asyncio_thread_state.asyncio_running_loop", 80),
    ("asyncio_thread_state.asyncio_running_task", 88),
    ("asyncio_thread_state.asyncio_tasks_head", 96),
];

/// Where each section of `_Py_DebugOffsets` keeps its `size` (the size of the struct the
/// section describes): every published offset must fall inside its section's struct.
const SECTIONS_313: &[(&str, u64)] = &[
    ("runtime_state", 24),
    ("interpreter_state", 48),
    ("thread_state", 152),
    ("interpreter_frame", 224),
    ("code_object", 272),
    ("pyobject", 352),
    ("type_object", 368),
    ("tuple_object", 400),
    ("list_object", 424),
    ("dict_object", 448),
    ("float_object", 472),
    ("long_object", 488),
    ("bytes_object", 512),
    ("unicode_object", 536),
    ("gc", 568),
];

const SECTIONS_314: &[(&str, u64)] = &[
    ("runtime_state", 24),
    ("interpreter_state", 48),
    ("thread_state", 176),
    ("interpreter_frame", 248),
    ("code_object", 312),
    ("pyobject", 400),
    ("type_object", 416),
    ("tuple_object", 448),
    ("list_object", 472),
    ("set_object", 496),
    ("dict_object", 528),
    ("float_object", 552),
    ("long_object", 568),
    ("bytes_object", 592),
    ("unicode_object", 616),
    ("gc", 648),
    ("gen_object", 664),
];

const SECTIONS_315: &[(&str, u64)] = &[
    ("runtime_state", 24),
    ("interpreter_state", 48),
    ("thread_state", 176),
    ("interpreter_frame", 312),
    ("code_object", 376),
    ("pyobject", 464),
    ("type_object", 480),
    ("heap_type_object", 528),
    ("tuple_object", 544),
    ("list_object", 568),
    ("set_object", 592),
    ("dict_object", 624),
    ("float_object", 648),
    ("long_object", 664),
    ("bytes_object", 688),
    ("unicode_object", 712),
    ("gc", 752),
    ("gen_object", 792),
];

/// Section sizes inside `_Py_DebugOffsets` for a version, if it publishes one.
pub fn sections(v: PyVersion) -> Option<&'static [(&'static str, u64)]> {
    match (v.major, v.minor) {
        (3, 13) => Some(SECTIONS_313),
        (3, 14) => Some(SECTIONS_314),
        (3, 15) => Some(SECTIONS_315),
        _ => None,
    }
}

/// The `size` words of `_Py_AsyncioModuleDebugOffsets`' sections.
pub const ASYNCIO_SECTIONS: &[(&str, u64)] = &[("asyncio_task_object", 0), ("asyncio_interpreter_state", 56), ("asyncio_thread_state", 72)];

/// How many bytes loopspy reads at a published field's offset; 0 for the fields that are
/// sizes rather than offsets (they must not exceed their section's size).
pub fn width(field: &str) -> u64 {
    match field {
        "interpreter_frame.owner" | "asyncio_task_object.task_is_task" | "asyncio_task_object.task_awaited_by_is_set" => 1,
        "code_object.firstlineno" | "unicode_object.state" | "gc.collecting" => 4,
        "pyobject.size" | "unicode_object.asciiobject_size" | "unicode_object.compactunicodeobject_size" => 0,
        _ => 8,
    }
}

/// The largest size we accept for a section's struct: the runtime and interpreter states
/// are hundreds of kB; the thread state is under 1 kB (3.15: 888 B); the objects and frames
/// a few hundred bytes.
pub fn max_section_size(section: &str) -> u64 {
    match section {
        // `asyncio_interpreter_state.size` is `sizeof(PyInterpreterState)` (226 kB in 3.15).
        "runtime_state" | "interpreter_state" | "asyncio_interpreter_state" => 1 << 20,
        "thread_state" | "asyncio_thread_state" => 1 << 16,
        _ => 1 << 12,
    }
}

/// Does this version have the `.AsyncioDebug` section?
pub fn has_asyncio_section(v: PyVersion) -> bool {
    v >= PyVersion::new(3, 14)
}
