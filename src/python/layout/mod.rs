//! Where CPython keeps things, per version: plain data, one row per interpreter version.
//!
//! Nothing here reads memory. The rows live in [`tables`]; the reader and the loop
//! discovery look numbers up here instead of branching on the version. Every number is
//! checked twice: against the compiled headers (`tools/layout-probe/out/`, see
//! `tests/layout_tables.rs`) and against real interpreters by the ground-truth tests.

pub mod debug_offsets;
mod tables;

use serde::Serialize;

pub use tables::{for_version, supported_range, SUPPORTED};

/// A CPython version as `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PyVersion {
    pub major: u8,
    pub minor: u8,
}

impl PyVersion {
    pub const fn new(major: u8, minor: u8) -> Self {
        PyVersion { major, minor }
    }
}

impl std::fmt::Display for PyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// All the layout facts loopspy uses for one CPython version (x86_64, GIL build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub version: PyVersion,
    pub object: ObjectLayout,
    pub types: TypeLayout,
    pub containers: ContainerLayout,
    pub long: LongLayout,
    pub str: StrLayout,
    pub dict: DictLayout,
    pub attrs: AttrScheme,
    pub member: MemberLayout,
    pub callables: CallableLayout,
    pub code: CodeLayout,
    pub coro: CoroLayout,
    pub frame: FrameLayout,
    pub thread: ThreadLayout,
    pub interp: InterpLayout,
    pub asyncio: AsyncioLayout,
    /// `queue.SimpleQueue`: a `ThreadPoolExecutor`'s work queue.
    pub simple_queue: SimpleQueueLayout,
    pub gc: GcLayout,
}

/// `queue.SimpleQueue` (`simplequeueobject` in CPython's `Modules/_queuemodule.c`, a private
/// struct: offsets read from the source of each version and checked on live queues, see
/// `tests/executor.rs`). `basicsize` is the type's `tp_basicsize`, checked before a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleQueueLayout {
    /// ≤ 3.12: `{PyObject_HEAD; lock; int locked; PyObject *lst; Py_ssize_t lst_pos; ...}`:
    /// the items are `lst[lst_pos:]`, so the depth is `len(lst) - lst_pos`.
    List { basicsize: u64, lst: u64, lst_pos: u64 },
    /// 3.13+: `{PyObject_HEAD; bool has_threads_waiting; RingBuf buf; ...}` with
    /// `RingBuf {put_idx, get_idx, items, items_cap, num_items}`: the depth is `num_items`
    /// (at most `items_cap`).
    Ring { basicsize: u64, items_cap: u64, num_items: u64 },
}

/// `PyObject` / `PyVarObject` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLayout {
    /// `sizeof(PyObject)`: where the first field after the header starts.
    pub head: u64,
    pub ob_type: u64,
    pub ob_size: u64,
}

/// `PyTypeObject` / `PyHeapTypeObject` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeLayout {
    pub tp_name: u64,
    pub tp_basicsize: u64,
    pub tp_flags: u64,
    pub tp_dict: u64,
    pub tp_dictoffset: u64,
    pub tp_mro: u64,
    pub ht_cached_keys: u64,
}

/// Simple containers and small objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLayout {
    pub list_items: u64,
    pub tuple_items: u64,
    pub float_value: u64,
    pub set_used: u64,
    pub set_mask: u64,
    pub set_table: u64,
    pub weakref_object: u64,
    pub module_dict: u64,
    /// `PyBytesObject.ob_sval`.
    pub bytes_data: u64,
    pub deque: DequeLayout,
}

/// `collections.deque` internals: a doubly linked list of blocks of `BLOCKLEN` item pointers
/// (`struct BLOCK { leftlink; data[BLOCKLEN]; rightlink; }`); the first item is
/// `leftblock->data[leftindex]`, the last `rightblock->data[rightindex]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DequeLayout {
    pub leftblock: u64,
    pub rightblock: u64,
    pub leftindex: u64,
    pub rightindex: u64,
    /// `BLOCKLEN`.
    pub block_len: u64,
    /// `offsetof(block, data)`; `rightlink` follows the data.
    pub block_data: u64,
}

/// How an `int` stores its sign and digit count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongEncoding {
    /// ≤ 3.11: `ob_size` is the signed digit count.
    SignedSize,
    /// ≥ 3.12: `lv_tag`: digit count `<< 3`, sign in the low two bits (0 +, 1 zero, 2 −).
    Tagged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongLayout {
    pub encoding: LongEncoding,
    /// `ob_size` or `lv_tag`.
    pub size_or_tag: u64,
    pub digits: u64,
}

/// `PyASCIIObject` / `PyCompactUnicodeObject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrLayout {
    pub length: u64,
    pub state: u64,
    pub kind_shift: u32,
    pub compact_bit: u32,
    pub ascii_bit: u32,
    /// `sizeof(PyASCIIObject)`: data of a compact ASCII string.
    pub ascii_data: u64,
    /// `sizeof(PyCompactUnicodeObject)`: data of a compact non-ASCII string, and where a
    /// legacy (non-compact) string keeps its data pointer.
    pub compact_data: u64,
}

/// Which `PyDictKeysObject` header a version has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysFormat {
    /// 3.8–3.10: `dk_size@8, dk_nentries@32, dk_indices@40`, index width from `dk_size`,
    /// entries always `{hash, key, value}`.
    Sized,
    /// 3.11+: `dk_log2_size@8, dk_log2_index_bytes@9, dk_kind@10, dk_nentries@24,
    /// dk_indices@32`; unicode/split keys have `{key, value}` entries.
    Log2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictLayout {
    pub ma_used: u64,
    pub ma_keys: u64,
    pub ma_values: u64,
    pub keys_format: KeysFormat,
    /// Bytes between what `ma_values` points at and the first value: 0 up to 3.12, 8 from
    /// 3.13 (`PyDictValues` header).
    pub values_header: u64,
}

/// Where an instance keeps its attributes (`__dict__`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrScheme {
    /// ≤ 3.10: a dict pointer at `tp_dictoffset`.
    DictOffset,
    /// 3.11 `Py_TPFLAGS_MANAGED_DICT`: `dict*` at obj−24, values array at obj−32.
    PreHeader,
    /// 3.12: a tagged `PyDictOrValues` at obj−24 (odd: values + 1, even: dict).
    TaggedDictOrValues,
    /// 3.13+: inline values at `obj + tp_basicsize` (`valid` byte at +3), otherwise a dict
    /// pointer at `obj + managed_dict`.
    InlineValues { managed_dict: i64 },
}

/// Member descriptors (`__slots__`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLayout {
    pub descr_member: u64,
    pub def_offset: u64,
}

/// Functions, bound methods, builtin methods, `functools.partial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallableLayout {
    pub func_code: u64,
    pub func_qualname: u64,
    pub method_func: u64,
    pub method_self: u64,
    pub cfunc_def: u64,
    pub cfunc_self: u64,
    pub partial_fn: u64,
}

/// How a code object maps bytecode offsets to source lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTableFormat {
    /// 3.8–3.9 `co_lnotab`.
    Lnotab,
    /// 3.10 `co_linetable` (pairs, −128 for no line).
    Linetable310,
    /// 3.11+ location table (varint entries).
    Locations311,
}

/// `PyCodeObject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLayout {
    pub filename: u64,
    pub name: u64,
    /// `co_qualname` (3.11+); older versions only have `co_name`.
    pub qualname: Option<u64>,
    /// `co_firstlineno` (an int).
    pub firstlineno: u64,
    /// `co_flags` (an int): `CO_GENERATOR`, `CO_COROUTINE`, ...
    pub flags: u64,
    /// The names of the frame's local slots, in slot order: `co_varnames` (≤ 3.10: the
    /// locals first in `f_localsplus`) or `co_localsplusnames` (3.11+).
    pub local_names: u64,
    /// The line table (`co_lnotab` / `co_linetable`, a bytes object) and its format.
    pub linetable: u64,
    pub line_format: LineTableFormat,
    /// `co_code_adaptive` (3.11+): the bytecode inline in the code object, which frames'
    /// instruction pointers point into.
    pub code_adaptive: Option<u64>,
}

/// Where a frame records the instruction it is executing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrPointer {
    /// ≤ 3.10: `f_lasti`, an int counted in `unit` bytes (1 up to 3.9, 2 in 3.10).
    Lasti { offset: u64, unit: u64 },
    /// 3.11+: a pointer into `co_code_adaptive` (`prev_instr`, from 3.13 `instr_ptr`).
    Pointer { offset: u64 },
}

/// Coroutine (and generator) objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoroLayout {
    pub name: u64,
    pub qualname: u64,
    /// Where the coroutine's frame is.
    pub frame: CoroFrame,
    /// Where the coroutine says whether it is suspended.
    pub suspended: Suspension,
}

/// Where a coroutine (or generator) keeps its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoroFrame {
    /// ≤ 3.10: `cr_frame`, a pointer to a `PyFrameObject` (NULL once finished).
    Pointer { offset: u64 },
    /// 3.11+: `cr_iframe`, an interpreter frame embedded in the coroutine object.
    Embedded { offset: u64 },
}

/// How to tell that a coroutine is suspended (waiting), and so that its frame's value stack
/// holds what it awaits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspension {
    /// 3.8–3.9: the frame's `f_stacktop` is non-NULL only while suspended.
    StackTopSet,
    /// 3.10: the frame's `f_state` byte equals one of `values`.
    FrameState { offset: u64, values: &'static [i8] },
    /// 3.11+: the coroutine's `cr_frame_state` byte equals one of `values`.
    CoroState { offset: u64, values: &'static [i8] },
}

/// Where a suspended frame's value stack ends (its top is what the frame awaits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackTop {
    /// 3.8–3.9: `f_stacktop`, a pointer one past the top.
    Pointer { offset: u64 },
    /// 3.10: `f_valuestack` (pointer) and `f_stackdepth` (int).
    Depth { base: u64, depth: u64 },
    /// 3.11–3.13: `stacktop`, an int index into `localsplus`.
    Index { offset: u64 },
    /// 3.14+: `stackpointer`, a pointer one past the top (tagged stack refs).
    StackPointer { offset: u64 },
}

/// `co_flags` bits of code that runs as a generator, coroutine or async generator: its frame is
/// linked to a caller only while it runs.
pub const CO_GENERATOR_LIKE: u32 = 0x20 | 0x80 | 0x100 | 0x200;

/// How to know that a walk of a thread's frames reached the bottom of its stack (and was not
/// cut short by a generator that yielded while we read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackBottom {
    /// ≤ 3.11: the chain ends at a frame whose code is not a generator or coroutine (those are
    /// linked to a caller only while they run; every thread starts in a plain function).
    NotGenerator,
    /// 3.12–3.14: the chain ends at the C-stack entry frame the interpreter pushes when a
    /// thread first enters Python.
    EntryFrame,
    /// 3.15+: the chain ends at the sentinel frame `PyThreadState.base_frame` points to.
    BaseFrame { tstate_base_frame: u64 },
}

/// How a thread's Python frames are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameChain {
    /// ≤ 3.10: `PyThreadState.frame` → `PyFrameObject`s.
    Objects { tstate_frame: u64 },
    /// 3.11–3.12: `PyThreadState.cframe` → `_PyCFrame.current_frame` → interpreter frames.
    CFrame { tstate_cframe: u64, current_frame: u64 },
    /// 3.13+: `PyThreadState.current_frame` → interpreter frames.
    Direct { tstate_current_frame: u64 },
}

/// How to tell that a Python frame was called from C (the first frame of a callback that
/// uvloop's C code runs, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMarker {
    /// ≤ 3.10: frames carry no such mark.
    Unknown,
    /// 3.11: the frame's own `is_entry` byte.
    Flag { offset: u64 },
    /// 3.12+: the frame's `previous` is a C-stack/interpreter-owned shim frame.
    ShimBelow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    pub chain: FrameChain,
    /// `f_back` / `previous`.
    pub back: u64,
    /// `f_code` / `f_executable`.
    pub code: u64,
    /// Tag bits of a `_PyStackRef` (3.14+), cleared from `f_executable` and from
    /// `localsplus` entries before they are used as pointers; 0 before 3.14.
    pub ref_tag_mask: u64,
    pub localsplus: u64,
    /// `owner` byte of interpreter frames, and the first owner value that marks a frame
    /// which is not a Python function's (`FRAME_OWNED_BY_CSTACK` / `_INTERPRETER`: shim
    /// and entry frames), when the version has such frames.
    pub owner: Option<(u64, u8)>,
    pub entry: EntryMarker,
    pub instr: InstrPointer,
    pub stack_top: StackTop,
    pub bottom: StackBottom,
}

/// Where a thread records its running event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunningLoop {
    /// 3.8–3.11: thread-state dict → `_RunningLoopHolder` → `rl_loop` at `holder_loop`; the
    /// holder's `rl_pid` (at `holder_pid`) says which process set it: a child forked from a
    /// loop's thread keeps its parent's holder, which is not a loop of its own.
    HolderInDict { holder_loop: u64, holder_pid: u64 },
    /// 3.12: thread-state dict → the loop itself.
    InDict,
    /// 3.13+: `_PyThreadStateImpl.asyncio_running_loop`.
    Field { offset: u64 },
}

pub const RUNNING_LOOP_KEY: &str = "__asyncio_running_event_loop__";

/// `PyThreadState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadLayout {
    pub next: u64,
    pub interp: u64,
    pub dict: u64,
    pub thread_id: u64,
    pub native_thread_id: Option<u64>,
    pub running_loop: RunningLoop,
}

/// `PyInterpreterState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterpLayout {
    pub threads_head: u64,
    pub modules: u64,
    /// `_PyRuntimeState.interpreters.head`: where `_PyRuntime` (an exported symbol) keeps the
    /// newest interpreter, the main one unless subinterpreters were made.
    pub runtime_head: u64,
}

/// Where the cyclic garbage collector's state lives (`struct _gc_runtime_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcHome {
    /// 3.8: `_PyRuntime.gc`, at this offset of `_PyRuntimeState`.
    Runtime { offset: u64 },
    /// 3.9+: `PyInterpreterState.gc` (published by 3.13+ as `interpreter_state.gc`).
    Interp { offset: u64 },
}

/// `struct _gc_runtime_state`: is a collection running, and which generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcLayout {
    pub home: GcHome,
    /// `collecting` (an int): 1 from before the "start" callbacks to after the "stop" ones.
    pub collecting: u64,
    /// `generations[NUM_GENERATIONS]`: where the array starts, the size of one
    /// `struct gc_generation`, and where its `count` (an int) is in it. A collection of
    /// generation N sets the counts of generations 0..=N to 0 and adds one to N+1's before it
    /// starts: which counts are zero tells the generation being collected.
    pub generations: u64,
    pub generation_size: u64,
    pub count: u64,
}

/// Where the task running on a loop is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentTask {
    /// ≤ 3.13: the dict `asyncio.tasks._current_tasks`, keyed by loop.
    ModuleDict,
    /// 3.14+: `_PyThreadStateImpl.asyncio_running_task` of the loop's thread.
    ThreadField { offset: u64 },
}

/// `_asyncio.Task` (private C struct, offsets established empirically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncioLayout {
    pub current_task: CurrentTask,
    pub fut_loop: u64,
    pub fut_state: u64,
    pub task_coro: u64,
    pub task_name: u64,
    /// `task_fut_waiter`: the future the task waits on (NULL when it does not).
    pub task_fut_waiter: u64,
    /// `fut_callback0`: the first done-callback (NULL when none), and `fut_callbacks`: a list
    /// of `(callback, context)` tuples for the others (NULL when none).
    pub fut_callback0: u64,
    pub fut_callbacks: u64,
    pub registry: TaskRegistry,
    /// Who awaits this future or task, as the interpreter records it (3.14+).
    pub awaited_by: Option<AwaitedBy>,
}

/// 3.14+: `FutureObj.fut_awaited_by` and its flags, shared by futures and tasks. The edge is
/// kept on the awaited object and names the awaiting one: NULL, a single awaiter, or (once a
/// second awaiter came, for good) a `set` of awaiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwaitedBy {
    /// `fut_awaited_by`: NULL, the awaiter, or a `set`.
    pub field: u64,
    /// `fut_is_task` (a byte): 1 for a Task (or subclass), 0 for a Future.
    pub is_task: u64,
    /// `fut_awaited_by_is_set` (a byte): the field holds a `set`.
    pub is_set: u64,
}

/// Where asyncio keeps the set of all tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRegistry {
    /// ≤ 3.11: `asyncio.tasks._all_tasks`, a `WeakSet`.
    AllTasksWeakSet,
    /// 3.12–3.13: `asyncio.tasks._scheduled_tasks` (a `WeakSet`) and `_eager_tasks` (a set).
    ScheduledAndEager,
    /// 3.14+: circular lists through `TaskObj.task_node`, one per thread state
    /// (`_PyThreadStateImpl.asyncio_tasks_head`) and one per interpreter for tasks of threads
    /// that ended.
    LinkedLists { task_node: u64, thread_head: u64, interp_head: u64 },
}

/// `fut_state` values.
pub const FUTURE_PENDING: i32 = 0;
pub const FUTURE_CANCELLED: i32 = 1;
pub const FUTURE_FINISHED: i32 = 2;

/// uvloop's `Loop` object and the libuv structures behind it (libuv 1.46–1.52, as vendored by
/// uvloop 0.19–0.23; the offsets did not change across them). Not tied to a Python version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UvLayout {
    /// `uvloop.Loop.uvloop`: the `uv_loop_t*`.
    pub loop_uv: u64,
    /// Where to look for the `_ready` deque pointer inside the `Loop` object.
    pub ready_scan: (u64, u64),
    /// `uv_loop_t.data`: uvloop stores the `Loop` object there (a consistency check).
    pub uv_data: u64,
    /// `uv_loop_t.nfds`: file descriptors being watched.
    pub uv_nfds: u64,
    /// `uv_loop_t.timer_heap.min` / `.nelts`.
    pub uv_timer_min: u64,
    pub uv_timer_count: u64,
    /// `uv_loop_t.time`: the loop's cached now, in ms: updated once per iteration, and by
    /// uvloop's `loop.time()` (so a callback that asks for the time moves it).
    pub uv_time: u64,
    /// `uv_loop_t.internal_fields`, and in it `loop_metrics.metrics.loop_count`: +1 once per
    /// iteration of `uv_run`, whatever the callbacks do.
    pub uv_internal: u64,
    pub internal_loop_count: u64,
    /// `uv_timer_t.node.heap` (what the heap links point at) and `uv_timer_t.timeout` (ms).
    pub timer_node: u64,
    pub timer_timeout: u64,
}

pub const LIBUV: UvLayout = UvLayout {
    loop_uv: 24,
    ready_scan: (32, 256),
    uv_data: 0,
    uv_nfds: 116,
    uv_timer_min: 520,
    uv_timer_count: 528,
    uv_time: 544,
    uv_internal: 40,
    internal_loop_count: 8,
    timer_node: 104,
    timer_timeout: 128,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_has_exactly_one_row() {
        for v in SUPPORTED {
            let row = for_version(*v).unwrap_or_else(|| panic!("no layout row for {v}"));
            assert_eq!(row.version, *v);
        }
        assert!(for_version(PyVersion::new(3, 7)).is_none());
        assert!(for_version(PyVersion::new(2, 7)).is_none());
    }
}
