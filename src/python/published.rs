//! Prefer the layout the interpreter publishes for debuggers (3.13+) over our table, and check
//! the table against it.
//!
//! CPython 3.13+ starts `_PyRuntime` (ELF section `.PyRuntime`) with `_Py_DebugOffsets`, and
//! 3.14+ puts `_Py_AsyncioModuleDebugOffsets` in section `.AsyncioDebug` of `_asyncio` (a
//! module `.so`, or the interpreter itself when built in). We find those sections in the files
//! the target has mapped, read the structs, and build the effective layout: the table row with
//! every published field replacing ours. Where the two differ the published value wins and
//! the difference is reported (`dump --json` → `layout`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::process::elf::ElfFile;
use crate::process::mapped::{self, Mapping};
use crate::process::memory::Memory;
use crate::python::layout::{debug_offsets, CurrentTask, FrameChain, GcHome, Layout, RunningLoop, StackBottom, TaskRegistry};
use crate::python::reader::le;

/// Largest offset we accept from the published tables (the biggest real one, the interpreter
/// state's asyncio task list, is about 11 kB).
const MAX_OFFSET: u64 = 1 << 20;

/// What the published offsets said about our table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayoutCheck {
    /// Where the offsets in use came from.
    pub source: String,
    /// How many fields were compared with a published value.
    pub checked: usize,
    /// Fields where the table and the interpreter disagreed (the published value was used).
    pub differences: Vec<Difference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub field: String,
    pub table: u64,
    pub published: u64,
}

impl LayoutCheck {
    fn table_only(why: impl Into<String>) -> Self {
        LayoutCheck { source: why.into(), checked: 0, differences: Vec::new() }
    }
}

/// The layout to use for a process: its table row, overridden and checked by what the
/// interpreter publishes. Never fails: without published offsets the table stands.
pub fn resolve<M: Memory>(pid: i32, mem: &M, base: &'static Layout) -> (&'static Layout, LayoutCheck) {
    let Some(fields) = debug_offsets::fields(base.version) else {
        return (base, LayoutCheck::table_only("table (this version publishes no debug offsets)"));
    };
    let maps = mapped::read(pid).unwrap_or_default();
    // `_PyRuntime` is all of `.PyRuntime`: when no file can be opened, its exported symbol in
    // memory is the section's address.
    let in_memory = || {
        maps.iter()
            .filter(|m| m.offset == 0 && m.file_name().is_some_and(is_python_file))
            .find_map(|m| crate::process::elf::exported_in_memory(mem, m.start, "_PyRuntime"))
    };
    let runtime = match find_section(pid, mem, &maps, ".PyRuntime", is_python_file).or_else(in_memory) {
        Some(addr) => addr,
        None => return (base, LayoutCheck::table_only("table (no .PyRuntime section found)")),
    };
    let published = match read_debug_offsets(mem, runtime, base, fields) {
        Ok(p) => p,
        Err(why) => return (base, LayoutCheck::table_only(format!("table (_Py_DebugOffsets unusable: {why})"))),
    };
    let mut values: BTreeMap<&'static str, u64> = published;
    let mut source = "_Py_DebugOffsets".to_string();
    if debug_offsets::has_asyncio_section(base.version) {
        let asyncio =
            find_section(pid, mem, &maps, ".AsyncioDebug", |name| name.starts_with("_asyncio") || is_python_file(name)).and_then(|addr| {
                read_fields(mem, addr, debug_offsets::ASYNCIO_SIZE, debug_offsets::ASYNCIO_FIELDS, debug_offsets::ASYNCIO_SECTIONS).ok()
            });
        if let Some(a) = asyncio {
            values.extend(a);
            source.push_str(" + AsyncioDebug");
        }
    }
    let mut layout = *base;
    let mut check = LayoutCheck { source, checked: 0, differences: Vec::new() };
    for (name, value) in values {
        let Some(field) = field_of(&mut layout, name) else { continue };
        check.checked += 1;
        if *field != value {
            check.differences.push(Difference { field: name.to_string(), table: *field, published: value });
            *field = value;
        }
    }
    if check.differences.is_empty() {
        return (base, check);
    }
    // One effective layout per attached process: leaked on purpose, it lives as long as the
    // attachment and keeps the reader's `&'static Layout` simple.
    (Box::leak(Box::new(layout)), check)
}

fn is_python_file(name: &str) -> bool {
    name.starts_with("python3") || name.starts_with("libpython3")
}

/// The runtime address of section `name` in the first mapped file (chosen by `wanted` on its
/// file name) that has it. Each file is opened as the target maps it (`process::mapped`: a
/// library deleted or replaced since, a chroot, a mount namespace of its own).
fn find_section<M: Memory>(pid: i32, mem: &M, maps: &[Mapping], name: &str, wanted: impl Fn(&str) -> bool) -> Option<u64> {
    let mut tried: Vec<&Mapping> = Vec::new();
    for m in maps.iter().filter(|m| m.offset == 0 && m.file_name().is_some_and(&wanted)) {
        if tried.iter().any(|t| t.same_file(m)) {
            continue;
        }
        tried.push(m);
        let Some((file, _)) = mapped::open(pid, m, maps, mem) else { continue };
        let Ok(elf) = ElfFile::from_file(file) else { continue };
        let (Ok(Some(section)), Ok(first)) = (elf.section(name), elf.first_load_vaddr()) else { continue };
        return Some(m.start.wrapping_sub(first).wrapping_add(section.addr));
    }
    None
}

fn read_debug_offsets<M: Memory>(
    mem: &M,
    addr: u64,
    base: &Layout,
    fields: &'static [(&'static str, u64)],
) -> Result<BTreeMap<&'static str, u64>, String> {
    let sections = debug_offsets::sections(base.version).unwrap_or(&[]);
    let size = fields.iter().chain(sections).map(|(_, at)| at + 8).max().unwrap_or(24).max(24);
    let mut raw = vec![0u8; size as usize];
    mem.read(addr, &mut raw).map_err(|e| e.to_string())?;
    if &raw[..8] != debug_offsets::COOKIE {
        return Err("no xdebugpy cookie".into());
    }
    let word = |at: u64| le::u64(&raw, at).map_err(|e| e.to_string());
    let version = word(debug_offsets::VERSION_AT)?;
    let (major, minor) = ((version >> 24) & 0xff, (version >> 16) & 0xff);
    if (major, minor) != (base.version.major as u64, base.version.minor as u64) {
        return Err(format!("it describes Python {major}.{minor}"));
    }
    if word(debug_offsets::FREE_THREADED_AT)? != 0 {
        return Err("free-threaded build".into());
    }
    decode(&raw, fields, sections)
}

fn read_fields<M: Memory>(
    mem: &M,
    addr: u64,
    size: u64,
    fields: &'static [(&'static str, u64)],
    sections: &'static [(&'static str, u64)],
) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut raw = vec![0u8; size as usize];
    mem.read(addr, &mut raw).map_err(|e| e.to_string())?;
    decode(&raw, fields, sections)
}

/// The published fields, each checked where it enters: a section's struct size must be
/// plausible for what it describes, and each offset must be aligned for what is read there
/// and fall inside its section's struct (CPython's own `_remote_debugging` checks the same
/// way). A table that fails any check is not used at all: half of a bad table is no better.
fn decode(
    raw: &[u8],
    fields: &'static [(&'static str, u64)],
    sections: &'static [(&'static str, u64)],
) -> Result<BTreeMap<&'static str, u64>, String> {
    let word = |at: u64| le::u64(raw, at).map_err(|e| e.to_string());
    let mut sizes = BTreeMap::new();
    for (section, at) in sections {
        let size = word(*at)?;
        if size == 0 || size > debug_offsets::max_section_size(section) {
            return Err(format!("{section}.size = {size} is not a plausible struct size"));
        }
        sizes.insert(*section, size);
    }
    let mut out = BTreeMap::new();
    for (name, at) in fields {
        let v = word(*at)?;
        check_field(name, v, &sizes)?;
        out.insert(*name, v);
    }
    Ok(out)
}

fn check_field(name: &str, v: u64, sizes: &BTreeMap<&str, u64>) -> Result<(), String> {
    let section = name.split('.').next().unwrap_or(name);
    let limit = sizes.get(section).copied().unwrap_or(MAX_OFFSET);
    let width = debug_offsets::width(name);
    let fits = v.checked_add(width).is_some_and(|end| end <= limit);
    if !fits {
        return Err(format!("{name} = {v} does not fit its struct ({limit} bytes)"));
    }
    if width > 1 && v % width != 0 {
        return Err(format!("{name} = {v} is not aligned for a {width}-byte field"));
    }
    Ok(())
}

/// The layout field that a published name describes.
fn field_of<'a>(l: &'a mut Layout, name: &str) -> Option<&'a mut u64> {
    Some(match name {
        "runtime_state.interpreters_head" => &mut l.interp.runtime_head,
        "interpreter_state.threads_head" => &mut l.interp.threads_head,
        "interpreter_state.imports_modules" => &mut l.interp.modules,
        "thread_state.next" => &mut l.thread.next,
        "thread_state.interp" => &mut l.thread.interp,
        "thread_state.current_frame" => match &mut l.frame.chain {
            FrameChain::Direct { tstate_current_frame } => tstate_current_frame,
            _ => return None,
        },
        "thread_state.base_frame" => match &mut l.frame.bottom {
            StackBottom::BaseFrame { tstate_base_frame } => tstate_base_frame,
            _ => return None,
        },
        "thread_state.thread_id" => &mut l.thread.thread_id,
        "thread_state.native_thread_id" => l.thread.native_thread_id.as_mut()?,
        "interpreter_frame.previous" => &mut l.frame.back,
        "interpreter_frame.executable" => &mut l.frame.code,
        "interpreter_frame.localsplus" => &mut l.frame.localsplus,
        "interpreter_frame.owner" => &mut l.frame.owner.as_mut()?.0,
        "code_object.filename" => &mut l.code.filename,
        "code_object.name" => &mut l.code.name,
        "code_object.qualname" => l.code.qualname.as_mut()?,
        "code_object.firstlineno" => &mut l.code.firstlineno,
        "code_object.localsplusnames" => &mut l.code.local_names,
        "pyobject.size" => &mut l.object.head,
        "pyobject.ob_type" => &mut l.object.ob_type,
        "type_object.tp_name" => &mut l.types.tp_name,
        "type_object.tp_flags" => &mut l.types.tp_flags,
        "type_object.tp_basicsize" => &mut l.types.tp_basicsize,
        "type_object.tp_dictoffset" => &mut l.types.tp_dictoffset,
        "heap_type_object.ht_cached_keys" => &mut l.types.ht_cached_keys,
        "tuple_object.ob_item" => &mut l.containers.tuple_items,
        "tuple_object.ob_size" | "list_object.ob_size" => &mut l.object.ob_size,
        "list_object.ob_item" => &mut l.containers.list_items,
        "set_object.used" => &mut l.containers.set_used,
        "set_object.table" => &mut l.containers.set_table,
        "set_object.mask" => &mut l.containers.set_mask,
        "dict_object.ma_keys" => &mut l.dict.ma_keys,
        "dict_object.ma_values" => &mut l.dict.ma_values,
        "float_object.ob_fval" => &mut l.containers.float_value,
        "long_object.lv_tag" => &mut l.long.size_or_tag,
        "long_object.ob_digit" => &mut l.long.digits,
        "unicode_object.state" => &mut l.str.state,
        "unicode_object.length" => &mut l.str.length,
        "unicode_object.asciiobject_size" => &mut l.str.ascii_data,
        "unicode_object.compactunicodeobject_size" => &mut l.str.compact_data,
        "gen_object.gi_name" => &mut l.coro.name,
        "interpreter_state.gc" => match &mut l.gc.home {
            GcHome::Interp { offset } => offset,
            GcHome::Runtime { .. } => return None,
        },
        "gc.collecting" => &mut l.gc.collecting,
        "asyncio_task_object.task_name" => &mut l.asyncio.task_name,
        "asyncio_task_object.task_coro" => &mut l.asyncio.task_coro,
        "asyncio_task_object.task_awaited_by" => &mut l.asyncio.awaited_by.as_mut()?.field,
        "asyncio_task_object.task_is_task" => &mut l.asyncio.awaited_by.as_mut()?.is_task,
        "asyncio_task_object.task_awaited_by_is_set" => &mut l.asyncio.awaited_by.as_mut()?.is_set,
        "asyncio_task_object.task_node" => match &mut l.asyncio.registry {
            TaskRegistry::LinkedLists { task_node, .. } => task_node,
            _ => return None,
        },
        "asyncio_interpreter_state.asyncio_tasks_head" => match &mut l.asyncio.registry {
            TaskRegistry::LinkedLists { interp_head, .. } => interp_head,
            _ => return None,
        },
        "asyncio_thread_state.asyncio_tasks_head" => match &mut l.asyncio.registry {
            TaskRegistry::LinkedLists { thread_head, .. } => thread_head,
            _ => return None,
        },
        "asyncio_thread_state.asyncio_running_loop" => match &mut l.thread.running_loop {
            RunningLoop::Field { offset } => offset,
            _ => return None,
        },
        "asyncio_thread_state.asyncio_running_task" => match &mut l.asyncio.current_task {
            CurrentTask::ThreadField { offset } => offset,
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::FakeMemory;
    use crate::python::layout::{for_version, PyVersion};

    /// A `_Py_DebugOffsets` blob as 3.14 would publish it, from our own table.
    fn blob(layout: &Layout) -> Vec<u8> {
        let fields = debug_offsets::fields(layout.version).unwrap();
        let sections = debug_offsets::sections(layout.version).unwrap();
        let size = fields.iter().chain(sections).map(|(_, at)| at + 8).max().unwrap();
        let mut raw = vec![0u8; size as usize];
        raw[..8].copy_from_slice(debug_offsets::COOKIE);
        let v = (3u64 << 24) | ((layout.version.minor as u64) << 16);
        raw[8..16].copy_from_slice(&v.to_le_bytes());
        for (section, at) in sections {
            let size = debug_offsets::max_section_size(section);
            raw[*at as usize..*at as usize + 8].copy_from_slice(&size.to_le_bytes());
        }
        let mut l = *layout;
        for (name, at) in fields {
            let value = *field_of(&mut l, name).unwrap_or_else(|| panic!("{name} maps to no field"));
            raw[*at as usize..*at as usize + 8].copy_from_slice(&value.to_le_bytes());
        }
        raw
    }

    #[test]
    fn every_published_field_maps_to_a_layout_field() {
        for minor in [13u8, 14, 15] {
            let base = for_version(PyVersion::new(3, minor)).unwrap();
            let mut l = *base;
            for (name, _) in debug_offsets::fields(base.version).unwrap() {
                assert!(field_of(&mut l, name).is_some(), "3.{minor}: {name}");
            }
            for (name, _) in debug_offsets::ASYNCIO_FIELDS {
                assert!(minor < 14 || field_of(&mut l, name).is_some(), "3.{minor}: {name}");
            }
        }
    }

    #[test]
    fn published_values_win_and_differences_are_reported() {
        let base = for_version(PyVersion::new(3, 14)).unwrap();
        let fields = debug_offsets::fields(base.version).unwrap();
        let mut raw = blob(base);
        // The interpreter says thread_state.native_thread_id is at 168, not 160.
        let at = fields.iter().find(|(n, _)| *n == "thread_state.native_thread_id").unwrap().1 as usize;
        raw[at..at + 8].copy_from_slice(&168u64.to_le_bytes());
        let mut mem = FakeMemory::new();
        mem.map(0x5000_0000, raw);
        let published = read_debug_offsets(&mem, 0x5000_0000, base, fields).unwrap();
        assert_eq!(published["thread_state.native_thread_id"], 168);
        let mut l = *base;
        *field_of(&mut l, "thread_state.native_thread_id").unwrap() = 168;
        assert_eq!(l.thread.native_thread_id, Some(168));
    }

    #[test]
    fn wrong_cookie_version_or_absurd_values_are_refused() {
        let base = for_version(PyVersion::new(3, 13)).unwrap();
        let fields = debug_offsets::fields(base.version).unwrap();
        let good = blob(base);
        let mut mem = FakeMemory::new();
        let mut no_cookie = good.clone();
        no_cookie[0] = b'X';
        mem.map(0x1000_0000, no_cookie);
        assert!(read_debug_offsets(&mem, 0x1000_0000, base, fields).is_err());
        let mut other_version = good.clone();
        other_version[8..16].copy_from_slice(&((3u64 << 24) | (12 << 16)).to_le_bytes());
        mem.map(0x2000_0000, other_version);
        assert!(read_debug_offsets(&mem, 0x2000_0000, base, fields).is_err());
        let mut absurd = good.clone();
        let at = fields[0].1 as usize;
        absurd[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        mem.map(0x3000_0000, absurd);
        assert!(read_debug_offsets(&mem, 0x3000_0000, base, fields).is_err());
        mem.map(0x4000_0000, good);
        assert!(read_debug_offsets(&mem, 0x4000_0000, base, fields).is_ok());
    }

    fn put(raw: &mut [u8], at: u64, v: u64) {
        raw[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn at_of(fields: &[(&str, u64)], name: &str) -> u64 {
        fields.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn offsets_outside_their_struct_misaligned_or_in_an_absurd_struct_are_refused() {
        for minor in [13u8, 14, 15] {
            let base = for_version(PyVersion::new(3, minor)).unwrap();
            let fields = debug_offsets::fields(base.version).unwrap();
            let sections = debug_offsets::sections(base.version).unwrap();
            let read = |raw: Vec<u8>| {
                let mut mem = FakeMemory::new();
                mem.map(0x5000_0000, raw);
                read_debug_offsets(&mem, 0x5000_0000, base, fields)
            };
            assert!(read(blob(base)).is_ok(), "3.{minor}: our own table must pass");
            // The frame's back pointer past the end of the frame struct.
            let mut raw = blob(base);
            put(&mut raw, at_of(sections, "interpreter_frame"), 64);
            put(&mut raw, at_of(fields, "interpreter_frame.previous"), 64);
            assert!(read(raw).unwrap_err().contains("does not fit"), "3.{minor}");
            // Misaligned for an 8-byte read.
            let mut raw = blob(base);
            put(&mut raw, at_of(fields, "code_object.filename"), 13);
            assert!(read(raw).unwrap_err().contains("aligned"), "3.{minor}");
            // A frame struct of a megabyte.
            let mut raw = blob(base);
            put(&mut raw, at_of(sections, "interpreter_frame"), 1 << 20);
            assert!(read(raw).unwrap_err().contains("struct size"), "3.{minor}");
            // An offset so big that offset + width wraps.
            let mut raw = blob(base);
            put(&mut raw, at_of(fields, "thread_state.next"), u64::MAX - 3);
            assert!(read(raw).is_err(), "3.{minor}");
        }
    }

    #[test]
    fn the_asyncio_section_is_checked_against_its_own_sizes() {
        let mut raw = vec![0u8; debug_offsets::ASYNCIO_SIZE as usize];
        for (_, at) in debug_offsets::ASYNCIO_SECTIONS {
            put(&mut raw, *at, 1024);
        }
        for (_, at) in debug_offsets::ASYNCIO_FIELDS {
            put(&mut raw, *at, 64);
        }
        let mut mem = FakeMemory::new();
        mem.map(0x5000_0000, raw.clone());
        let read = |mem: &FakeMemory| {
            read_fields(mem, 0x5000_0000, debug_offsets::ASYNCIO_SIZE, debug_offsets::ASYNCIO_FIELDS, debug_offsets::ASYNCIO_SECTIONS)
        };
        assert!(read(&mem).is_ok());
        // The running loop 2 kB into a 1 kB thread state.
        put(&mut raw, 80, 2048);
        mem.map(0x5000_0000, raw);
        assert!(read(&mem).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, .. Default::default() })]

        /// Any word of the published table replaced by anything: either refused, or every
        /// accepted offset (and the span it is read with) fits inside its section's struct.
        #[test]
        fn any_corrupted_table_is_refused_or_within_bounds(minor in 13u8..=15, word in 0usize..128, value: u64, small in 0u64..4096, pick_small: bool) {
            let base = for_version(PyVersion::new(3, minor)).unwrap();
            let fields = debug_offsets::fields(base.version).unwrap();
            let sections = debug_offsets::sections(base.version).unwrap();
            let mut raw = blob(base);
            let at = (word * 8) as u64 % raw.len() as u64;
            put(&mut raw, at, if pick_small { small } else { value });
            let mut mem = FakeMemory::new();
            mem.map(0x5000_0000, raw.clone());
            if let Ok(values) = read_debug_offsets(&mem, 0x5000_0000, base, fields) {
                for (name, v) in values {
                    let section = name.split('.').next().unwrap();
                    let size = le::u64(&raw, at_of(sections, section)).unwrap();
                    proptest::prop_assert!(v + debug_offsets::width(name) <= size, "{name} = {v} in {size}");
                    proptest::prop_assert!(size <= debug_offsets::max_section_size(section));
                }
            }
        }
    }
}
