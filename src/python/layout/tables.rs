//! One row per CPython version (x86_64, GIL build).
//!
//! Sources: `tools/layout-probe/out/3.X.txt` (offsets compiled from each version's own
//! headers; `tests/layout_tables.rs` checks these rows against those files) and, for the
//! private `_asyncio` structs, `tools/layout-probe/out/empirical-3.X.txt` (found by scanning
//! live objects for known `id()`s). A row is added only when its version can be run here.

use super::*;

const OBJECT: ObjectLayout = ObjectLayout { head: 16, ob_type: 8, ob_size: 16 };

const fn types(ht_cached_keys: u64) -> TypeLayout {
    TypeLayout { tp_name: 24, tp_basicsize: 32, tp_flags: 168, tp_dict: 264, tp_dictoffset: 288, tp_mro: 344, ht_cached_keys }
}

const fn containers(tuple_items: u64) -> ContainerLayout {
    ContainerLayout {
        list_items: 24,
        tuple_items,
        float_value: 16,
        set_used: 24,
        set_mask: 32,
        set_table: 40,
        weakref_object: 16,
        module_dict: 16,
        bytes_data: 32,
        deque: DequeLayout { leftblock: 24, rightblock: 32, leftindex: 40, rightindex: 48, block_len: 64, block_data: 8 },
    }
}

const LONG_SIGNED_SIZE: LongLayout = LongLayout { encoding: LongEncoding::SignedSize, size_or_tag: 16, digits: 24 };
const LONG_TAGGED: LongLayout = LongLayout { encoding: LongEncoding::Tagged, size_or_tag: 16, digits: 24 };

const fn strs(ascii_data: u64, compact_data: u64) -> StrLayout {
    StrLayout { length: 16, state: 32, kind_shift: 2, compact_bit: 5, ascii_bit: 6, ascii_data, compact_data }
}

const fn dicts(keys_format: KeysFormat, values_header: u64) -> DictLayout {
    DictLayout { ma_used: 16, ma_keys: 32, ma_values: 40, keys_format, values_header }
}

const MEMBER: MemberLayout = MemberLayout { descr_member: 40, def_offset: 16 };

const fn callables(func_code: u64, func_qualname: u64) -> CallableLayout {
    CallableLayout { func_code, func_qualname, method_func: 16, method_self: 24, cfunc_def: 16, cfunc_self: 24, partial_fn: 16 }
}

const fn thread(dict: u64, thread_id: u64, native_thread_id: Option<u64>, running_loop: RunningLoop) -> ThreadLayout {
    ThreadLayout { next: 8, interp: 16, dict, thread_id, native_thread_id, running_loop }
}

/// `{PyObject_HEAD; PyObject *rl_loop; pid_t rl_pid;}` (`_asynciomodule.c`, 3.8–3.11).
const HOLDER: RunningLoop = RunningLoop::HolderInDict { holder_loop: 16, holder_pid: 24 };

const fn asyncio(
    current_task: CurrentTask,
    fut_state: u64,
    task_coro: u64,
    task_name: u64,
    task_fut_waiter: u64,
    registry: TaskRegistry,
) -> AsyncioLayout {
    AsyncioLayout {
        current_task,
        fut_loop: 16,
        fut_state,
        task_coro,
        task_name,
        task_fut_waiter,
        fut_callback0: 24,
        fut_callbacks: 40,
        registry,
        awaited_by: None,
    }
}

/// 3.14+ (`_Py_AsyncioModuleDebugOffsets`: task_awaited_by, task_is_task,
/// task_awaited_by_is_set).
const AWAITED_BY_314: AwaitedBy = AwaitedBy { field: 96, is_task: 108, is_set: 109 };

/// `struct _gc_runtime_state` (`struct gc_generation` is 24 bytes, its `count` at 20, in
/// every version).
const fn gc(home: GcHome, collecting: u64, generations: u64) -> GcLayout {
    GcLayout { home, collecting, generations, generation_size: 24, count: 20 }
}

const SUSPENDED_311: &[i8] = &[-1];
const SUSPENDED_313: &[i8] = &[-2, -1];
const SUSPENDED_315: &[i8] = &[1, 2, 3];

pub const PY38: Layout = Layout {
    version: PyVersion::new(3, 8),
    object: OBJECT,
    types: types(872),
    containers: containers(24),
    long: LONG_SIGNED_SIZE,
    str: strs(48, 72),
    dict: dicts(KeysFormat::Sized, 0),
    attrs: AttrScheme::DictOffset,
    member: MEMBER,
    callables: callables(16, 104),
    code: CodeLayout {
        filename: 104,
        name: 112,
        qualname: None,
        firstlineno: 40,
        flags: 36,
        local_names: 72,
        linetable: 120,
        line_format: LineTableFormat::Lnotab,
        code_adaptive: None,
    },
    coro: CoroLayout { name: 48, qualname: 56, frame: CoroFrame::Pointer { offset: 16 }, suspended: Suspension::StackTopSet },
    frame: FrameLayout {
        chain: FrameChain::Objects { tstate_frame: 24 },
        back: 24,
        code: 32,
        ref_tag_mask: 0,
        localsplus: 360,
        owner: None,
        entry: EntryMarker::Unknown,
        instr: InstrPointer::Lasti { offset: 104, unit: 1 },
        stack_top: StackTop::Pointer { offset: 72 },
        bottom: StackBottom::NotGenerator,
    },
    thread: thread(152, 176, None, HOLDER),
    interp: InterpLayout { threads_head: 8, modules: 56, runtime_head: 32 },
    asyncio: asyncio(CurrentTask::ModuleDict, 72, 112, 120, 104, TaskRegistry::AllTasksWeakSet),
    simple_queue: SimpleQueueLayout::List { basicsize: 56, lst: 32, lst_pos: 40 },
    gc: gc(GcHome::Runtime { offset: 344 }, 200, 24),
};

pub const PY39: Layout = Layout {
    version: PyVersion::new(3, 9),
    types: types(864),
    interp: InterpLayout { threads_head: 8, modules: 856, runtime_head: 32 },
    asyncio: asyncio(CurrentTask::ModuleDict, 80, 152, 160, 144, TaskRegistry::AllTasksWeakSet),
    gc: gc(GcHome::Interp { offset: 616 }, 200, 24),
    ..PY38
};

pub const PY310: Layout = Layout {
    version: PyVersion::new(3, 10),
    types: types(872),
    callables: callables(48, 40),
    coro: CoroLayout {
        name: 40,
        qualname: 48,
        frame: CoroFrame::Pointer { offset: 16 },
        suspended: Suspension::FrameState { offset: 108, values: SUSPENDED_311 },
    },
    code: CodeLayout { line_format: LineTableFormat::Linetable310, ..PY38.code },
    frame: FrameLayout {
        localsplus: 352,
        instr: InstrPointer::Lasti { offset: 96, unit: 2 },
        stack_top: StackTop::Depth { base: 64, depth: 80 },
        ..PY38.frame
    },
    interp: InterpLayout { threads_head: 8, modules: 856, runtime_head: 32 },
    asyncio: asyncio(CurrentTask::ModuleDict, 88, 160, 168, 152, TaskRegistry::AllTasksWeakSet),
    gc: gc(GcHome::Interp { offset: 616 }, 200, 24),
    ..PY38
};

pub const PY311: Layout = Layout {
    version: PyVersion::new(3, 11),
    dict: dicts(KeysFormat::Log2, 0),
    attrs: AttrScheme::PreHeader,
    code: CodeLayout {
        filename: 112,
        name: 120,
        qualname: Some(128),
        firstlineno: 72,
        flags: 48,
        local_names: 96,
        linetable: 136,
        line_format: LineTableFormat::Locations311,
        code_adaptive: Some(184),
    },
    coro: CoroLayout {
        name: 32,
        qualname: 40,
        frame: CoroFrame::Embedded { offset: 80 },
        suspended: Suspension::CoroState { offset: 75, values: SUSPENDED_311 },
    },
    frame: FrameLayout {
        chain: FrameChain::CFrame { tstate_cframe: 56, current_frame: 8 },
        back: 48,
        code: 32,
        ref_tag_mask: 0,
        localsplus: 72,
        owner: None,
        entry: EntryMarker::Flag { offset: 68 },
        instr: InstrPointer::Pointer { offset: 56 },
        stack_top: StackTop::Index { offset: 64 },
        bottom: StackBottom::NotGenerator,
    },
    thread: thread(128, 152, Some(160), HOLDER),
    interp: InterpLayout { threads_head: 16, modules: 888, runtime_head: 40 },
    asyncio: asyncio(CurrentTask::ModuleDict, 88, 136, 144, 128, TaskRegistry::AllTasksWeakSet),
    gc: gc(GcHome::Interp { offset: 648 }, 200, 24),
    ..PY310
};

pub const PY312: Layout = Layout {
    version: PyVersion::new(3, 12),
    types: types(880),
    long: LONG_TAGGED,
    str: strs(40, 56),
    attrs: AttrScheme::TaggedDictOrValues,
    code: CodeLayout { firstlineno: 68, code_adaptive: Some(192), ..PY311.code },
    coro: CoroLayout {
        name: 24,
        qualname: 32,
        frame: CoroFrame::Embedded { offset: 72 },
        suspended: Suspension::CoroState { offset: 67, values: SUSPENDED_311 },
    },
    frame: FrameLayout {
        chain: FrameChain::CFrame { tstate_cframe: 56, current_frame: 0 },
        back: 8,
        code: 0,
        ref_tag_mask: 0,
        localsplus: 72,
        owner: Some((70, 3)),
        entry: EntryMarker::ShimBelow,
        instr: InstrPointer::Pointer { offset: 56 },
        stack_top: StackTop::Index { offset: 64 },
        bottom: StackBottom::EntryFrame,
    },
    thread: thread(112, 136, Some(144), RunningLoop::InDict),
    interp: InterpLayout { threads_head: 72, modules: 944, runtime_head: 40 },
    asyncio: asyncio(CurrentTask::ModuleDict, 88, 136, 144, 128, TaskRegistry::ScheduledAndEager),
    gc: gc(GcHome::Interp { offset: 112 }, 200, 24),
    ..PY311
};

pub const PY313: Layout = Layout {
    version: PyVersion::new(3, 13),
    coro: CoroLayout { suspended: Suspension::CoroState { offset: 67, values: SUSPENDED_313 }, ..PY312.coro },
    code: CodeLayout { code_adaptive: Some(200), ..PY312.code },
    dict: dicts(KeysFormat::Log2, 8),
    attrs: AttrScheme::InlineValues { managed_dict: -24 },
    frame: FrameLayout { chain: FrameChain::Direct { tstate_current_frame: 72 }, ..PY312.frame },
    thread: thread(128, 152, Some(160), RunningLoop::Field { offset: 304 }),
    interp: InterpLayout { threads_head: 7344, modules: 7656, runtime_head: 632 },
    asyncio: asyncio(CurrentTask::ModuleDict, 96, 120, 128, 112, TaskRegistry::ScheduledAndEager),
    simple_queue: SimpleQueueLayout::Ring { basicsize: 72, items_cap: 48, num_items: 56 },
    gc: gc(GcHome::Interp { offset: 7400 }, 200, 24),
    ..PY312
};

pub const PY314: Layout = Layout {
    version: PyVersion::new(3, 14),
    code: CodeLayout { code_adaptive: Some(208), ..PY313.code },
    containers: containers(32),
    frame: FrameLayout {
        chain: FrameChain::Direct { tstate_current_frame: 72 },
        back: 8,
        code: 0,
        ref_tag_mask: 3,
        localsplus: 80,
        owner: Some((74, 3)),
        entry: EntryMarker::ShimBelow,
        instr: InstrPointer::Pointer { offset: 56 },
        stack_top: StackTop::StackPointer { offset: 64 },
        bottom: StackBottom::EntryFrame,
    },
    thread: thread(128, 152, Some(160), RunningLoop::Field { offset: 864 }),
    interp: InterpLayout { threads_head: 7344, modules: 7688, runtime_head: 808 },
    asyncio: AsyncioLayout {
        awaited_by: Some(AWAITED_BY_314),
        ..asyncio(
            CurrentTask::ThreadField { offset: 872 },
            104,
            128,
            136,
            120,
            TaskRegistry::LinkedLists { task_node: 152, thread_head: 880, interp_head: 10880 },
        )
    },
    gc: gc(GcHome::Interp { offset: 7408 }, 192, 24),
    ..PY313
};

pub const PY315: Layout = Layout {
    version: PyVersion::new(3, 15),
    frame: FrameLayout { bottom: StackBottom::BaseFrame { tstate_base_frame: 80 }, ..PY314.frame },
    coro: CoroLayout { suspended: Suspension::CoroState { offset: 67, values: SUSPENDED_315 }, ..PY314.coro },
    types: types(888),
    thread: thread(152, 176, Some(184), RunningLoop::Field { offset: 1024 }),
    interp: InterpLayout { threads_head: 7336, modules: 7592, runtime_head: 936 },
    asyncio: AsyncioLayout {
        awaited_by: Some(AWAITED_BY_314),
        ..asyncio(
            CurrentTask::ThreadField { offset: 1032 },
            104,
            128,
            136,
            120,
            TaskRegistry::LinkedLists { task_node: 152, thread_head: 1048, interp_head: 10856 },
        )
    },
    gc: gc(GcHome::Interp { offset: 7400 }, 112, 8),
    ..PY314
};

static ROWS: [Layout; 8] = [PY38, PY39, PY310, PY311, PY312, PY313, PY314, PY315];

/// The versions that have a row.
pub const SUPPORTED: &[PyVersion] = &[
    PyVersion::new(3, 8),
    PyVersion::new(3, 9),
    PyVersion::new(3, 10),
    PyVersion::new(3, 11),
    PyVersion::new(3, 12),
    PyVersion::new(3, 13),
    PyVersion::new(3, 14),
    PyVersion::new(3, 15),
];

/// "3.8 to 3.15": the versions that have a row, for messages.
pub fn supported_range() -> String {
    match (SUPPORTED.first(), SUPPORTED.last()) {
        (Some(lo), Some(hi)) => format!("{lo} to {hi}"),
        _ => String::new(),
    }
}

/// The row for a version, if loopspy knows it.
pub fn for_version(v: PyVersion) -> Option<&'static Layout> {
    ROWS.iter().find(|row| row.version == v)
}
