//! A loop's default executor (`loop.run_in_executor(None, ...)`, `asyncio.to_thread`): a
//! `concurrent.futures.ThreadPoolExecutor`, read from outside: its limit, its worker threads
//! (named, each with what it runs) and the work waiting in its queue.
//!
//! Stock loops keep it in the instance attribute `_default_executor`; uvloop in a C field of
//! its `Loop`, found once per class as the only `ThreadPoolExecutor` among the object's first
//! pointer fields (as its `_ready` deque is). The executor is created on the first use:
//! before that the loop has none.

use std::collections::HashMap;

use crate::asyncio::eventloop::LoopKind;
use crate::process::memory::Memory;
use crate::python::frames::{StackFrame, StackReader};
use crate::python::interp::PyThread;
use crate::python::layout::{SimpleQueueLayout, LIBUV};
use crate::python::reader::{plausible_pointer, Error, ObjectReader, Result};

/// Worker threads described per executor (the rest are counted).
pub const MAX_WORKERS: usize = 256;
/// Largest work queue believed (a bigger count is a torn read).
const MAX_QUEUED: u64 = 1 << 40;
/// Largest `max_workers` believed.
const MAX_MAX_WORKERS: i64 = 1 << 20;
/// The module whose frames run a worker (`_worker`, `_WorkItem.run`, 3.14's
/// `_WorkerContext.run`): what sits above them is the work.
const POOL_FILE: &str = "concurrent/futures/thread.py";

/// What a worker thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Running a work item (frames above the pool's `_worker`).
    Busy,
    /// Waiting in `_worker` for the next work item.
    Idle,
    /// Its stack could not be read whole, it has no thread state (not started, or ended),
    /// or it does not run the pool's `_worker` (an initializer).
    Unknown,
}

impl WorkerState {
    pub const ALL: [WorkerState; 3] = [WorkerState::Busy, WorkerState::Idle, WorkerState::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Busy => "busy",
            WorkerState::Idle => "idle",
            WorkerState::Unknown => "unknown",
        }
    }
}

/// One worker thread of an executor.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    /// `Thread._name` (a string from the target: escape it where it is shown).
    pub name: Option<String>,
    /// `Thread._native_id`, or the thread state's when the attribute is not set yet.
    pub native_id: Option<i32>,
    /// `Thread._ident` (`threading.get_ident()`).
    pub ident: Option<u64>,
    pub state: WorkerState,
    /// The function the work item runs: the outermost frame above the pool's own (`None`
    /// when idle, or when the work is a C function).
    pub work: Option<StackFrame>,
    /// The innermost frame of the thread while busy.
    pub at: Option<StackFrame>,
}

/// A `ThreadPoolExecutor`, as seen at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorView {
    /// `id(executor)`.
    pub addr: u64,
    pub class_name: String,
    /// `_max_workers`.
    pub max_workers: u64,
    /// `len(_threads)`: workers started (a pool never ends one before shutdown).
    pub threads: u64,
    /// Workers seen running a work item.
    pub busy: u64,
    /// Work items in `_work_queue`, not yet taken by a worker.
    pub queued: u64,
    /// `_shutdown`.
    pub shutdown: bool,
    /// The first [`MAX_WORKERS`] workers, in the order of `_threads`.
    pub workers: Vec<Worker>,
}

impl ExecutorView {
    /// Every worker the pool may start is busy and work waits.
    pub fn saturated(&self) -> bool {
        self.queued > 0 && self.threads >= self.max_workers && self.busy >= self.max_workers
    }
}

/// Finds and reads default executors; caches where each uvloop class keeps its executor.
#[derive(Debug, Default)]
pub struct ExecutorReader {
    uv_field: HashMap<u64, u64>,
}

impl ExecutorReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The loop's default executor, when it has one and it is a `ThreadPoolExecutor` (or a
    /// subclass).
    pub fn default_executor<M: Memory>(&mut self, r: &ObjectReader<M>, kind: LoopKind, event_loop: u64) -> Result<Option<u64>> {
        let found = match kind {
            LoopKind::Selector => r.getattr(event_loop, "_default_executor")?,
            LoopKind::Uvloop => self.uv_executor(r, event_loop)?,
        };
        let Some(executor) = found.filter(|e| *e != 0) else { return Ok(None) };
        if r.is_none(executor)? {
            return Ok(None);
        }
        let tp = r.type_of(executor)?;
        Ok(r.is_subclass_by_name(tp, "ThreadPoolExecutor")?.then_some(executor))
    }

    /// uvloop: the `Loop`'s `_default_executor` field, found once per class (while the loop
    /// has no executor, the field holds `None`, and nothing is cached).
    fn uv_executor<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<Option<u64>> {
        let tp = r.type_of(event_loop)?;
        if let Some(off) = self.uv_field.get(&tp) {
            return Ok(Some(r.ptr(event_loop + off)?));
        }
        let (from, to) = LIBUV.ready_scan;
        let words = r.pointer_array(event_loop + from, ((to - from) / 8) as usize)?;
        let mut found = None;
        for (i, p) in words.iter().enumerate() {
            if !plausible_pointer(*p) {
                continue;
            }
            let Ok(ptp) = r.type_of(*p) else { continue };
            if r.type_info(ptp).is_ok() && r.is_subclass_by_name(ptp, "ThreadPoolExecutor").unwrap_or(false) {
                if found.is_some() {
                    return Err(Error::invalid(event_loop, "more than one ThreadPoolExecutor in uvloop.Loop"));
                }
                found = Some((from + 8 * i as u64, *p));
            }
        }
        let Some((off, executor)) = found else { return Ok(None) };
        if self.uv_field.len() > 64 {
            self.uv_field.clear();
        }
        self.uv_field.insert(tp, off);
        Ok(Some(executor))
    }

    /// Read an executor found by [`default_executor`](Self::default_executor): its figures,
    /// and each worker matched to the interpreter's `threads` (by ident) with its stack.
    pub fn read<M: Memory>(
        &self,
        r: &ObjectReader<M>,
        executor: u64,
        threads: &[PyThread],
        stacks: &mut StackReader,
    ) -> Result<ExecutorView> {
        let class_name = r.type_name(executor)?;
        let max_workers = r.int(r.attr(executor, "_max_workers")?)?;
        if !(0..=MAX_MAX_WORKERS).contains(&max_workers) {
            return Err(Error::invalid(executor, format!("max_workers {max_workers}")));
        }
        let shutdown = match r.getattr(executor, "_shutdown")? {
            Some(b) => r.int(b)? != 0,
            None => false,
        };
        let queued = queue_depth(r, r.attr(executor, "_work_queue")?)?;
        let (members, threads_len) = r.set_keys(r.attr(executor, "_threads")?, MAX_WORKERS)?;
        let mut workers = Vec::with_capacity(members.len());
        for thread in members {
            workers.push(worker(r, thread, threads, stacks)?);
        }
        let busy = workers.iter().filter(|w| w.state == WorkerState::Busy).count() as u64;
        Ok(ExecutorView {
            addr: executor,
            class_name,
            max_workers: max_workers as u64,
            threads: threads_len,
            busy,
            queued,
            shutdown,
            workers,
        })
    }
}

/// Items waiting in a `queue.SimpleQueue`.
pub fn queue_depth<M: Memory>(r: &ObjectReader<M>, queue: u64) -> Result<u64> {
    let info = r.type_info_of(queue)?;
    if info.name != "_queue.SimpleQueue" && !r.is_subclass_by_name(info.addr, "_queue.SimpleQueue")? {
        return Err(Error::invalid(queue, format!("expected a SimpleQueue, found {}", info.name)));
    }
    let basic = |b: u64| {
        if (info.basicsize as u64) < b {
            return Err(Error::invalid(queue, format!("SimpleQueue of {} bytes, expected {b}", info.basicsize)));
        }
        Ok(())
    };
    match r.layout().simple_queue {
        SimpleQueueLayout::List { basicsize, lst, lst_pos } => {
            basic(basicsize)?;
            let len = r.list_len(r.obj_ptr(queue + lst)?)?;
            let pos = r.i64(queue + lst_pos)?;
            if pos < 0 || pos as u64 > len {
                return Err(Error::invalid(queue, format!("SimpleQueue position {pos} of {len}")));
            }
            Ok(len - pos as u64)
        }
        SimpleQueueLayout::Ring { basicsize, items_cap, num_items } => {
            basic(basicsize)?;
            let (cap, n) = (r.i64(queue + items_cap)?, r.i64(queue + num_items)?);
            if n < 0 || cap < n || cap as u64 > MAX_QUEUED {
                return Err(Error::invalid(queue, format!("SimpleQueue of {n} items in {cap}")));
            }
            Ok(n as u64)
        }
    }
}

/// A `threading.Thread` of the pool: its name, ids, and what it runs.
fn worker<M: Memory>(r: &ObjectReader<M>, thread: u64, threads: &[PyThread], stacks: &mut StackReader) -> Result<Worker> {
    let name = match r.getattr(thread, "_name")? {
        Some(n) => Some(r.name(n)?),
        None => None,
    };
    let int_attr = |attr: &str| -> Result<Option<i64>> {
        match r.getattr(thread, attr)? {
            Some(v) if !r.is_none(v)? => Ok(Some(r.int(v)?)),
            _ => Ok(None),
        }
    };
    let ident = int_attr("_ident")?.map(|i| i as u64);
    let native_attr = int_attr("_native_id")?.and_then(|n| i32::try_from(n).ok());
    let state = ident.and_then(|i| threads.iter().find(|t| t.ident == i));
    let native_id = native_attr.or(state.and_then(|t| t.native_id));
    let mut w = Worker { name, native_id, ident, state: WorkerState::Unknown, work: None, at: None };
    if let Some(t) = state {
        // A walk cut by a switch is tried again once; then the worker is unknown.
        let stack = stacks.stack(r, t.tstate).or_else(|_| stacks.stack(r, t.tstate));
        if let Ok(stack) = stack {
            (w.state, w.work, w.at) = classify(&stack);
        }
    }
    Ok(w)
}

/// Busy or idle from a worker's stack (innermost first): idle while the pool's `_worker` is
/// the innermost frame (it waits in `SimpleQueue.get`, a C call), busy with frames above it.
pub fn classify(stack: &[StackFrame]) -> (WorkerState, Option<StackFrame>, Option<StackFrame>) {
    let in_pool = |f: &StackFrame| f.file.ends_with(POOL_FILE);
    let Some(worker) = stack.iter().position(|f| in_pool(f) && f.function.rsplit('.').next() == Some("_worker")) else {
        return (WorkerState::Unknown, None, None);
    };
    if worker == 0 {
        return (WorkerState::Idle, None, None);
    }
    let mut first_pool = worker;
    while first_pool > 0 && in_pool(&stack[first_pool - 1]) {
        first_pool -= 1;
    }
    let work = first_pool.checked_sub(1).map(|i| stack[i].clone());
    (WorkerState::Busy, work, stack.first().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(function: &str, file: &str) -> StackFrame {
        StackFrame { function: function.into(), file: file.into(), line: 1 }
    }

    /// A `SimpleQueue` built byte by byte for each version's row: its depth, and hostile
    /// values (a position past the end, more items than room, the wrong size or type) refused.
    #[test]
    fn simple_queue_depth_on_every_layout() {
        use crate::python::reader::tests::Heap;
        for v in crate::python::layout::SUPPORTED {
            let mut h = Heap::new(v.minor);
            let row = h.layout.simple_queue;
            type Fields = Vec<(u64, i64)>;
            let (basic, good, bad): (u64, Fields, Fields) = match row {
                SimpleQueueLayout::List { basicsize, lst, lst_pos } => {
                    let items: Vec<u64> = (0..5).map(|_| h.none).collect();
                    let list = h.list(&items);
                    (basicsize, vec![(lst, list as i64), (lst_pos, 2)], vec![(lst_pos, 6), (lst_pos, -1)])
                }
                SimpleQueueLayout::Ring { basicsize, items_cap, num_items } => {
                    (basicsize, vec![(items_cap, 8), (num_items, 3)], vec![(num_items, 9), (items_cap, -1), (items_cap, 1 << 50)])
                }
            };
            let tp = h.new_type("_queue.SimpleQueue", 0, basic as i64);
            let q = h.object(tp, basic);
            for (off, val) in &good {
                h.write_i64(q + off, *val);
            }
            let small_tp = h.new_type("_queue.SimpleQueue", 0, basic as i64 - 8);
            let small = h.object(small_tp, basic);
            let other_tp = h.new_type("collections.deque", 0, basic as i64);
            let other = h.object(other_tp, basic);
            let mut hostile = Vec::new();
            for (off, val) in &bad {
                let b = h.object(tp, basic);
                for (o, v) in &good {
                    h.write_i64(b + o, *v);
                }
                h.write_i64(b + off, *val);
                hostile.push(b);
            }
            let r = h.reader();
            assert_eq!(queue_depth(&r, q).unwrap(), 3, "{v}");
            assert!(queue_depth(&r, small).is_err(), "{v}");
            assert!(queue_depth(&r, other).is_err(), "{v}");
            for b in hostile {
                assert!(queue_depth(&r, b).is_err(), "{v}");
            }
        }
    }

    /// An executor built byte by byte (attributes in an instance dict): read whole with an
    /// empty pool; with hostile attributes (a negative or huge limit, a list for `_threads`,
    /// a queue of another type) an error, never a panic.
    #[test]
    fn executors_with_hostile_attributes_are_errors() {
        use crate::python::reader::tests::Heap;
        for v in crate::python::layout::SUPPORTED {
            let mut h = Heap::new(v.minor);
            let (basic, depth_at) = match h.layout.simple_queue {
                SimpleQueueLayout::List { basicsize, lst, .. } => (basicsize, lst),
                SimpleQueueLayout::Ring { basicsize, .. } => (basicsize, 0),
            };
            let queue_tp = h.new_type("_queue.SimpleQueue", 0, basic as i64);
            let queue = h.object(queue_tp, basic);
            if depth_at != 0 {
                let empty = h.list(&[]);
                h.write_u64(queue + depth_at, empty);
            }
            let set_tp = h.new_type("set", 0, 200);
            let set = h.object(set_tp, 200);
            h.write_i64(set + h.layout.containers.set_mask, 7);
            let table = h.reserve(8 * 16);
            h.write_u64(set + h.layout.containers.set_table, table);
            let pool_tp = h.new_type_with("ThreadPoolExecutor", 0, 32, 16);
            let executor = |h: &mut Heap, max: i64, threads: u64, queue: u64| {
                let names = ["_max_workers", "_threads", "_work_queue", "_shutdown"].map(|n| h.str(n));
                let (max, no) = (h.int(max), h.int(0));
                let dict = h.dict(&[(names[0], max), (names[1], threads), (names[2], queue), (names[3], no)]);
                let at = h.object(pool_tp, 32);
                h.write_u64(at + 16, dict);
                at
            };
            let good = executor(&mut h, 6, set, queue);
            let list = h.list(&[]);
            let hostile = [
                executor(&mut h, -1, set, queue),
                executor(&mut h, 1 << 40, set, queue),
                executor(&mut h, 6, list, queue),
                executor(&mut h, 6, set, list),
            ];
            let r = h.reader();
            let x = ExecutorReader::new().read(&r, good, &[], &mut StackReader::new()).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!((x.max_workers, x.threads, x.busy, x.queued, x.shutdown), (6, 0, 0, 0, false), "{v}");
            assert_eq!(x.class_name, "ThreadPoolExecutor");
            for b in hostile {
                assert!(ExecutorReader::new().read(&r, b, &[], &mut StackReader::new()).is_err(), "{v}");
            }
        }
    }

    #[test]
    fn a_worker_is_busy_with_frames_above_the_pool() {
        let pool = "/usr/lib/python3.14/concurrent/futures/thread.py";
        let bottom = [f("_worker", pool), f("Thread.run", "/usr/lib/python3.14/threading.py")];
        let idle: Vec<StackFrame> = bottom.to_vec();
        assert_eq!(classify(&idle).0, WorkerState::Idle);
        let mut busy = vec![f("sleep_in", "/app/a.py"), f("render", "/app/a.py"), f("_WorkerContext.run", pool), f("_WorkItem.run", pool)];
        busy.extend(bottom.iter().cloned());
        let (state, work, at) = classify(&busy);
        assert_eq!(state, WorkerState::Busy);
        assert_eq!(&*work.unwrap().function, "render");
        assert_eq!(&*at.unwrap().function, "sleep_in");
        // A C function as the work: busy, no Python frame for it.
        let c_work: Vec<StackFrame> = std::iter::once(f("run", pool)).chain(bottom.iter().cloned()).collect();
        assert_eq!(classify(&c_work), (WorkerState::Busy, None, Some(f("run", pool))));
        assert_eq!(classify(&[f("main", "/app/a.py")]).0, WorkerState::Unknown);
        assert_eq!(classify(&[]).0, WorkerState::Unknown);
    }
}
