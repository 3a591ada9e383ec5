//! The per-version layout rows must match what the compiler says about each version's own
//! headers (`tools/layout-probe/out/3.X.txt`) and what was measured on live objects for the
//! private `_asyncio` structs (`out/empirical-3.X.txt`). Regenerate with
//! `tools/layout-probe/run.sh`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use loopspy::python::layout::{
    debug_offsets, for_version, AttrScheme, CoroFrame, CurrentTask, EntryMarker, FrameChain, GcHome, InstrPointer, KeysFormat,
    LineTableFormat, LongEncoding, RunningLoop, StackTop, Suspension, TaskRegistry, SUPPORTED,
};

fn probe(file: &str) -> HashMap<String, i64> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/layout-probe/out").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let (Some(first), Some(second)) = (parts.next(), parts.next()) else { continue };
        // Header lines: `name value`; empirical lines: `EMP name value` / `PASS name value`;
        // the interpreter's own `.AsyncioDebug` section: `AD name value` (kept as `AD.name`).
        let (name, value) = match first {
            "EMP" | "PASS" | "AD" => match parts.next() {
                Some(v) if first == "AD" => (format!("AD.{second}"), v),
                Some(v) => (second.to_string(), v),
                None => continue,
            },
            "FAIL" | "NOTE" => continue,
            _ => (first.to_string(), second),
        };
        if let Ok(v) = value.parse::<i64>() {
            out.insert(name, v);
        }
    }
    out
}

struct Checker {
    version: String,
    values: HashMap<String, i64>,
    errors: Vec<String>,
}

impl Checker {
    fn get(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }

    fn eq(&mut self, what: &str, row: u64, name: &str) {
        match self.get(name) {
            Some(v) if v == row as i64 => {}
            Some(v) => self.errors.push(format!("{}: {what} is {row} in the table, {name} = {v}", self.version)),
            None => self.errors.push(format!("{}: {what}: the probe has no {name}", self.version)),
        }
    }

    fn first(&mut self, what: &str, row: u64, names: &[&str]) {
        match names.iter().find(|n| self.values.contains_key(**n)) {
            Some(n) => self.eq(what, row, n),
            None => self.errors.push(format!("{}: {what}: the probe has none of {names:?}", self.version)),
        }
    }
}

#[test]
fn rows_match_the_headers_and_the_empirical_probe() {
    let mut errors = Vec::new();
    for v in SUPPORTED {
        let row = for_version(*v).unwrap();
        let mut values = probe(&format!("{v}.txt"));
        values.extend(probe(&format!("empirical-{v}.txt")));
        let mut c = Checker { version: v.to_string(), values, errors: Vec::new() };

        c.eq("object.head", row.object.head, "sizeof(PyObject)");
        c.eq("object.ob_type", row.object.ob_type, "PyObject.ob_type");
        c.eq("object.ob_size", row.object.ob_size, "PyVarObject.ob_size");
        let t = row.types;
        c.eq("tp_name", t.tp_name, "PyTypeObject.tp_name");
        c.eq("tp_basicsize", t.tp_basicsize, "PyTypeObject.tp_basicsize");
        c.eq("tp_flags", t.tp_flags, "PyTypeObject.tp_flags");
        c.eq("tp_dict", t.tp_dict, "PyTypeObject.tp_dict");
        c.eq("tp_dictoffset", t.tp_dictoffset, "PyTypeObject.tp_dictoffset");
        c.eq("tp_mro", t.tp_mro, "PyTypeObject.tp_mro");
        c.eq("ht_cached_keys", t.ht_cached_keys, "PyHeapTypeObject.ht_cached_keys");
        let k = row.containers;
        c.eq("list_items", k.list_items, "PyListObject.ob_item");
        c.eq("tuple_items", k.tuple_items, "PyTupleObject.ob_item");
        c.eq("float_value", k.float_value, "PyFloatObject.ob_fval");
        c.eq("set_used", k.set_used, "PySetObject.used");
        c.eq("set_mask", k.set_mask, "PySetObject.mask");
        c.eq("set_table", k.set_table, "PySetObject.table");
        c.eq("weakref_object", k.weakref_object, "PyWeakReference.wr_object");
        c.eq("module_dict", k.module_dict, "PyModuleObject.md_dict");
        match row.long.encoding {
            LongEncoding::SignedSize => {
                c.eq("long size", row.long.size_or_tag, "PyVarObject.ob_size");
                c.eq("long digits", row.long.digits, "PyLongObject.ob_digit");
            }
            LongEncoding::Tagged => {
                c.eq("long tag", row.long.size_or_tag, "PyLongObject.long_value.lv_tag");
                c.eq("long digits", row.long.digits, "PyLongObject.long_value.ob_digit");
            }
        }
        let s = row.str;
        c.eq("str length", s.length, "PyASCIIObject.length");
        c.eq("str state", s.state, "PyASCIIObject.state");
        c.eq("str kind bit", s.kind_shift as u64, "PyASCIIObject.state.kind.bit");
        c.eq("str compact bit", s.compact_bit as u64, "PyASCIIObject.state.compact.bit");
        c.eq("str ascii bit", s.ascii_bit as u64, "PyASCIIObject.state.ascii.bit");
        c.eq("str ascii data", s.ascii_data, "sizeof(PyASCIIObject)");
        c.eq("str compact data", s.compact_data, "sizeof(PyCompactUnicodeObject)");
        let d = row.dict;
        c.eq("ma_used", d.ma_used, "PyDictObject.ma_used");
        c.eq("ma_keys", d.ma_keys, "PyDictObject.ma_keys");
        c.eq("ma_values", d.ma_values, "PyDictObject.ma_values");
        match d.keys_format {
            KeysFormat::Sized => {
                c.eq("dk_size", 8, "PyDictKeysObject.dk_size");
                c.eq("dk_nentries", 32, "PyDictKeysObject.dk_nentries");
                c.eq("dk_indices", 40, "PyDictKeysObject.dk_indices");
            }
            KeysFormat::Log2 => {
                c.eq("dk_log2_size", 8, "PyDictKeysObject.dk_log2_size");
                c.eq("dk_log2_index_bytes", 9, "PyDictKeysObject.dk_log2_index_bytes");
                c.eq("dk_kind", 10, "PyDictKeysObject.dk_kind");
                c.eq("dk_nentries", 24, "PyDictKeysObject.dk_nentries");
                c.eq("dk_indices", 32, "PyDictKeysObject.dk_indices");
            }
        }
        if d.values_header > 0 || c.get("PyDictValues.values").is_some() {
            c.eq("values header", d.values_header, "PyDictValues.values");
        }
        if let AttrScheme::InlineValues { managed_dict } = row.attrs {
            c.eq("managed dict", managed_dict as u64, "const.MANAGED_DICT_OFFSET");
            c.eq("inline valid byte", 3, "PyDictValues.valid");
        }
        c.eq("d_member", row.member.descr_member, "PyMemberDescrObject.d_member");
        c.eq("PyMemberDef.offset", row.member.def_offset, "PyMemberDef.offset");
        let f = row.callables;
        c.eq("func_code", f.func_code, "PyFunctionObject.func_code");
        c.eq("func_qualname", f.func_qualname, "PyFunctionObject.func_qualname");
        c.eq("im_func", f.method_func, "PyMethodObject.im_func");
        c.eq("im_self", f.method_self, "PyMethodObject.im_self");
        c.eq("m_ml", f.cfunc_def, "PyCFunctionObject.m_ml");
        c.eq("m_self", f.cfunc_self, "PyCFunctionObject.m_self");
        c.eq("partial fn", f.partial_fn, "partial.fn");
        c.eq("sw_task", row.object.head, "TaskStepMethWrapper.sw_task");
        let code = row.code;
        c.eq("co_filename", code.filename, "PyCodeObject.co_filename");
        c.eq("co_name", code.name, "PyCodeObject.co_name");
        c.eq("co_firstlineno", code.firstlineno, "PyCodeObject.co_firstlineno");
        c.eq("co_flags", code.flags, "PyCodeObject.co_flags");
        c.first("local names", code.local_names, &["PyCodeObject.co_localsplusnames", "PyCodeObject.co_varnames"]);
        match code.qualname {
            Some(q) => c.eq("co_qualname", q, "PyCodeObject.co_qualname"),
            None => assert!(c.get("PyCodeObject.co_qualname").is_none(), "{v}: co_qualname exists"),
        }
        c.eq("bytes data", k.bytes_data, "PyBytesObject.ob_sval");
        c.first("line table", code.linetable, &["PyCodeObject.co_lnotab", "PyCodeObject.co_linetable"]);
        let format_ok = match code.line_format {
            LineTableFormat::Lnotab => c.get("PyCodeObject.co_lnotab").is_some(),
            LineTableFormat::Linetable310 => c.get("PyCodeObject.co_linetable").is_some() && c.get("PyCodeObject.co_qualname").is_none(),
            LineTableFormat::Locations311 => c.get("PyCodeObject.co_qualname").is_some(),
        };
        assert!(format_ok, "{v}: line table format {:?}", code.line_format);
        match code.code_adaptive {
            Some(at) => c.eq("co_code_adaptive", at, "PyCodeObject.co_code_adaptive"),
            None => assert!(c.get("PyCodeObject.co_code_adaptive").is_none(), "{v}"),
        }
        match row.frame.instr {
            InstrPointer::Lasti { offset, unit } => {
                c.eq("f_lasti", offset, "PyFrameObject.f_lasti");
                // 3.10 counts f_lasti in code units.
                assert_eq!(unit, if v.minor == 10 { 2 } else { 1 }, "{v}");
            }
            InstrPointer::Pointer { offset } => {
                c.first("instr pointer", offset, &["_PyInterpreterFrame.prev_instr", "_PyInterpreterFrame.instr_ptr"])
            }
        }
        if let EntryMarker::Flag { offset } = row.frame.entry {
            c.eq("is_entry", offset, "_PyInterpreterFrame.is_entry");
        }
        c.eq("cr_name", row.coro.name, "PyCoroObject.cr_name");
        match row.coro.frame {
            CoroFrame::Pointer { offset } => c.eq("cr_frame", offset, "PyCoroObject.cr_frame"),
            CoroFrame::Embedded { offset } => c.eq("cr_iframe", offset, "PyCoroObject.cr_iframe"),
        }
        let suspended_names = ["const.FRAME_SUSPENDED", "const.FRAME_SUSPENDED_YIELD_FROM", "const.FRAME_SUSPENDED_YIELD_FROM_LOCKED"];
        let suspended: Vec<i8> = suspended_names.iter().filter_map(|n| c.get(n)).map(|v| v as i8).collect();
        match row.coro.suspended {
            Suspension::StackTopSet => {
                c.eq("f_stacktop", 72, "PyFrameObject.f_stacktop");
                assert!(c.get("PyFrameObject.f_state").is_none(), "{v}");
            }
            Suspension::FrameState { offset, values } => {
                c.eq("f_state", offset, "PyFrameObject.f_state");
                assert_eq!(values, suspended.as_slice(), "{v}: suspended states");
            }
            Suspension::CoroState { offset, values } => {
                c.eq("cr_frame_state", offset, "PyCoroObject.cr_frame_state");
                assert_eq!(values, suspended.as_slice(), "{v}: suspended states");
            }
        }
        match row.frame.stack_top {
            StackTop::Pointer { offset } => c.eq("f_stacktop", offset, "PyFrameObject.f_stacktop"),
            StackTop::Depth { base, depth } => {
                c.eq("f_valuestack", base, "PyFrameObject.f_valuestack");
                c.eq("f_stackdepth", depth, "PyFrameObject.f_stackdepth");
            }
            StackTop::Index { offset } => c.eq("stacktop", offset, "_PyInterpreterFrame.stacktop"),
            StackTop::StackPointer { offset } => c.eq("stackpointer", offset, "_PyInterpreterFrame.stackpointer"),
        }
        c.eq("task_fut_waiter", row.asyncio.task_fut_waiter, "Task.task_fut_waiter");
        c.eq("fut_callback0", row.asyncio.fut_callback0, "Future.fut_callback0");
        c.eq("fut_callbacks", row.asyncio.fut_callbacks, "Future.fut_callbacks");
        match row.asyncio.awaited_by {
            Some(ab) => {
                c.eq("awaited_by", ab.field, "Task.task_awaited_by");
                c.eq("awaited_by (published)", ab.field, "AD.asyncio_task_object.task_awaited_by");
                c.eq("is_task (published)", ab.is_task, "AD.asyncio_task_object.task_is_task");
                c.eq("awaited_by_is_set (published)", ab.is_set, "AD.asyncio_task_object.task_awaited_by_is_set");
            }
            None => assert!(c.get("AD.asyncio_task_object.task_awaited_by").is_none(), "{v}: publishes awaited_by"),
        }
        match row.asyncio.registry {
            TaskRegistry::LinkedLists { task_node, thread_head, interp_head } => {
                c.eq("task_node", task_node, "Task.task_node");
                c.eq("task_node (published)", task_node, "AD.asyncio_task_object.task_node");
                c.eq("tstate tasks head (published)", thread_head, "AD.asyncio_thread_state.asyncio_tasks_head");
                c.eq("interp tasks head (published)", interp_head, "AD.asyncio_interpreter_state.asyncio_tasks_head");
                c.eq("tstate tasks head", thread_head, "_PyThreadStateImpl.asyncio_tasks_head");
                c.eq("interp tasks head", interp_head, "PyInterpreterState.asyncio_tasks_head");
            }
            _ => assert!(c.get("_PyThreadStateImpl.asyncio_tasks_head").is_none(), "{v}: has task lists"),
        }
        c.eq("cr_qualname", row.coro.qualname, "PyCoroObject.cr_qualname");
        let fr = row.frame;
        match fr.chain {
            FrameChain::Objects { tstate_frame } => {
                c.eq("tstate frame", tstate_frame, "PyThreadState.frame");
                c.eq("f_back", fr.back, "PyFrameObject.f_back");
                c.eq("f_code", fr.code, "PyFrameObject.f_code");
                c.eq("f_localsplus", fr.localsplus, "PyFrameObject.f_localsplus");
            }
            FrameChain::CFrame { tstate_cframe, current_frame } => {
                c.eq("tstate cframe", tstate_cframe, "PyThreadState.cframe");
                c.eq("cframe current_frame", current_frame, "_PyCFrame.current_frame");
            }
            FrameChain::Direct { tstate_current_frame } => {
                c.eq("tstate current_frame", tstate_current_frame, "PyThreadState.current_frame");
            }
        }
        if !matches!(fr.chain, FrameChain::Objects { .. }) {
            c.eq("previous", fr.back, "_PyInterpreterFrame.previous");
            c.first("frame code", fr.code, &["_PyInterpreterFrame.f_code", "_PyInterpreterFrame.f_executable"]);
            c.eq("localsplus", fr.localsplus, "_PyInterpreterFrame.localsplus");
        }
        match fr.owner {
            Some((at, first_non_python)) => {
                c.eq("owner", at, "_PyInterpreterFrame.owner");
                let owners: Vec<i64> =
                    ["const.FRAME_OWNED_BY_CSTACK", "const.FRAME_OWNED_BY_INTERPRETER"].iter().filter_map(|n| c.get(n)).collect();
                let min = owners.iter().min().copied();
                if min != Some(first_non_python as i64) {
                    c.errors.push(format!("{v}: first non-Python owner {first_non_python}, headers {owners:?}"));
                }
            }
            None => assert!(c.get("const.FRAME_OWNED_BY_CSTACK").is_none(), "{v}: has C-stack frames"),
        }
        let tag = c.get("const.Py_TAG_BITS").unwrap_or(0);
        if tag != fr.ref_tag_mask as i64 {
            c.errors.push(format!("{v}: ref_tag_mask {} but Py_TAG_BITS {tag}", fr.ref_tag_mask));
        }
        let th = row.thread;
        c.eq("tstate next", th.next, "PyThreadState.next");
        c.eq("tstate interp", th.interp, "PyThreadState.interp");
        c.eq("tstate dict", th.dict, "PyThreadState.dict");
        c.eq("tstate thread_id", th.thread_id, "PyThreadState.thread_id");
        match th.native_thread_id {
            Some(off) => c.eq("native_thread_id", off, "PyThreadState.native_thread_id"),
            None => assert!(c.get("PyThreadState.native_thread_id").is_none(), "{v}"),
        }
        if let RunningLoop::Field { offset } = th.running_loop {
            c.eq("asyncio_running_loop", offset, "_PyThreadStateImpl.asyncio_running_loop");
        } else {
            assert!(c.get("_PyThreadStateImpl.asyncio_running_loop").is_none(), "{v}: has a running-loop field");
        }
        c.first("threads head", row.interp.threads_head, &["PyInterpreterState.tstate_head", "PyInterpreterState.threads.head"]);
        c.first("modules", row.interp.modules, &["PyInterpreterState.modules", "PyInterpreterState.imports.modules"]);
        c.eq("runtime interpreters head", row.interp.runtime_head, "_PyRuntimeState.interpreters.head");
        let g = row.gc;
        match g.home {
            GcHome::Runtime { offset } => c.eq("gc state in _PyRuntime", offset, "_PyRuntimeState.gc"),
            GcHome::Interp { offset } => c.eq("gc state in the interpreter", offset, "PyInterpreterState.gc"),
        }
        c.eq("gc collecting", g.collecting, "_gc_runtime_state.collecting");
        c.eq("gc generations", g.generations, "_gc_runtime_state.generations");
        c.eq("gc generation size", g.generation_size, "sizeof(gc_generation)");
        c.eq("gc generation count", g.count, "gc_generation.count");
        let a = row.asyncio;
        match a.current_task {
            CurrentTask::ThreadField { offset } => c.eq("asyncio_running_task", offset, "_PyThreadStateImpl.asyncio_running_task"),
            CurrentTask::ModuleDict => assert!(c.get("_PyThreadStateImpl.asyncio_running_task").is_none(), "{v}"),
        }
        c.eq("fut_loop", a.fut_loop, "Task.fut_loop");
        c.eq("fut_state", a.fut_state, "Future.fut_state");
        c.eq("task_coro", a.task_coro, "Task.task_coro");
        c.eq("task_name", a.task_name, "Task.task_name");
        errors.extend(c.errors);
    }
    assert!(errors.is_empty(), "layout rows disagree with the probe:\n{}", errors.join("\n"));
}

/// Where each field sits inside `_Py_DebugOffsets` (3.13+), as the compiler says.
#[test]
fn debug_offsets_positions_match_the_headers() {
    let mut errors = Vec::new();
    for v in SUPPORTED {
        let Some(fields) = debug_offsets::fields(*v) else { continue };
        let values = probe(&format!("{v}.txt"));
        for (name, at) in fields {
            match values.get(&format!("_Py_DebugOffsets@{name}")) {
                Some(real) if *real == *at as i64 => {}
                other => errors.push(format!("{v}: {name} at {at}, headers say {other:?}")),
            }
        }
        // Each section's size word, and the size itself within what we accept.
        for (section, at) in debug_offsets::sections(*v).unwrap_or(&[]) {
            match values.get(&format!("_Py_DebugOffsets@{section}.size")) {
                Some(real) if *real == *at as i64 => {}
                other => errors.push(format!("{v}: {section}.size at {at}, headers say {other:?}")),
            }
            match values.get(&format!("_Py_DebugOffsets.{section}.size")) {
                Some(size) if (*size as u64) <= debug_offsets::max_section_size(section) => {}
                other => errors.push(format!("{v}: {section} is {other:?} bytes, above our limit")),
            }
        }
        if debug_offsets::has_asyncio_section(*v) {
            // Our positions follow the section's fixed shape: 13 u64s in declaration order.
            let order = [
                "asyncio_task_object.size",
                "asyncio_task_object.task_name",
                "asyncio_task_object.task_awaited_by",
                "asyncio_task_object.task_is_task",
                "asyncio_task_object.task_awaited_by_is_set",
                "asyncio_task_object.task_coro",
                "asyncio_task_object.task_node",
                "asyncio_interpreter_state.size",
                "asyncio_interpreter_state.asyncio_tasks_head",
                "asyncio_thread_state.size",
                "asyncio_thread_state.asyncio_running_loop",
                "asyncio_thread_state.asyncio_running_task",
                "asyncio_thread_state.asyncio_tasks_head",
            ];
            assert_eq!(order.len() as u64 * 8, debug_offsets::ASYNCIO_SIZE);
            for (name, at) in debug_offsets::ASYNCIO_FIELDS {
                let index = order.iter().position(|n| n == name).unwrap() as u64;
                if index * 8 != *at {
                    errors.push(format!("{v}: {name} at {at}, declaration order says {}", index * 8));
                }
            }
        }
    }
    assert!(errors.is_empty(), "debug offset positions disagree with the probe:\n{}", errors.join("\n"));
}

/// The checks `published` applies to the tables an interpreter publishes (each offset inside
/// its section's struct, each struct of a plausible size) hold for the real tables of every
/// version: a check that refuses a real interpreter would silently fall back to our rows.
#[test]
fn the_published_offset_checks_accept_every_real_interpreter() {
    let mut errors = Vec::new();
    let mut checked = 0;
    for v in SUPPORTED {
        let Some(fields) = debug_offsets::fields(*v) else { continue };
        let mut values = probe(&format!("{v}.txt"));
        values.extend(probe(&format!("empirical-{v}.txt")));
        let mut check = |section: &str, size: Option<i64>, name: &str, value: Option<i64>| {
            let (Some(size), Some(value)) = (size, value) else {
                errors.push(format!("{v}: the probe has no {section}.size or {name}"));
                return;
            };
            if size as u64 > debug_offsets::max_section_size(section) {
                errors.push(format!("{v}: {section} is {size} bytes, above the {} accepted", debug_offsets::max_section_size(section)));
            }
            let width = debug_offsets::width(name);
            if value as u64 + width > size as u64 || (width > 1 && value as u64 % width != 0) {
                errors.push(format!("{v}: {name} = {value} (+{width}) would be refused in a {size}-byte {section}"));
            }
            checked += 1;
        };
        for (name, _) in fields {
            let section = name.split('.').next().unwrap();
            check(
                section,
                values.get(&format!("_Py_DebugOffsets.{section}.size")).copied(),
                name,
                values.get(&format!("_Py_DebugOffsets.{name}")).copied(),
            );
        }
        if debug_offsets::has_asyncio_section(*v) {
            for (name, _) in debug_offsets::ASYNCIO_FIELDS {
                let section = name.split('.').next().unwrap();
                check(section, values.get(&format!("AD.{section}.size")).copied(), name, values.get(&format!("AD.{name}")).copied());
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(checked > 100, "only {checked} fields checked");
}

/// The tests' one list of versions (`common::versions!`, which generates every per-version
/// test) is the list of versions that have a row.
#[test]
fn the_tests_cover_exactly_the_supported_versions() {
    let supported: Vec<String> = SUPPORTED.iter().map(|v| v.to_string()).collect();
    assert_eq!(common::versions(), supported, "update versions! in tests/common/mod.rs");
}
