//! asyncio tasks, read from outside: where each version keeps them, each task's name and
//! state, the chain of coroutines where it is suspended, and which task awaits which.
//!
//! Bounded everywhere: registries are walked up to [`MAX_TASKS`], details are read for at
//! most the number asked, and every list says when it was cut. Reads are batched where the
//! registry allows (sets); the 3.14+ linked lists are walked node by node.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::asyncio::callback;
use crate::process::memory::Memory;
use crate::python::frames::{self, FrameRef, StackFrame, StackReader};
use crate::python::interp::{self, PyThread};
use crate::python::layout::{AwaitedBy, CoroFrame, Suspension, TaskRegistry, FUTURE_CANCELLED, FUTURE_FINISHED, FUTURE_PENDING};
use crate::python::reader::{le, Error, ObjectReader, Result};

/// Most tasks walked in one registry (a bigger registry is reported as cut).
pub const MAX_TASKS: usize = 1_000_000;
/// Deepest chain of awaiting coroutines followed (the interpreter's own inspection stops at
/// 1024 too).
pub const MAX_AWAIT_DEPTH: usize = 1024;
/// Most frames of a running task's chain kept (cut in the middle beyond).
pub const MAX_RUNNING_FRAMES: usize = 1024;
/// Most awaiters read for one task (a set), and most children of one gather.
pub const MAX_AWAITERS: usize = 10_000;
/// Most edges kept for one loop.
pub const MAX_EDGES: usize = 1_000_000;
/// Most done-callbacks of one task looked at for its `TaskGroup`.
pub const MAX_CALLBACKS: usize = 1024;
/// Deepest await tree built; what is deeper starts new roots. (Its JSON nests two levels per
/// tree level: this keeps a report within the 128 levels common JSON parsers accept.)
pub const MAX_TREE_DEPTH: usize = 48;
/// Most await cycles listed.
pub const MAX_CYCLES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Cancelled,
    Done,
    /// Not a C `_asyncio.Task` (a pure-Python or third-party task): state not read.
    Unknown,
}

/// Every task of the process found in the registry (all loops), with their loop and state.
#[derive(Debug, Clone, Default)]
pub struct TaskSet {
    /// `(task, loop, state)`.
    pub tasks: Vec<(u64, u64, TaskState)>,
    /// The registry held more than [`MAX_TASKS`].
    pub truncated: bool,
}

impl TaskSet {
    pub fn of_loop(&self, event_loop: u64) -> impl Iterator<Item = &(u64, u64, TaskState)> {
        self.tasks.iter().filter(move |t| t.1 == event_loop)
    }

    pub fn counts(&self, event_loop: u64) -> TaskCounts {
        let mut c = TaskCounts::default();
        for (_, _, state) in self.of_loop(event_loop) {
            c.total += 1;
            match state {
                TaskState::Pending => c.pending += 1,
                TaskState::Done => c.done += 1,
                TaskState::Cancelled => c.cancelled += 1,
                TaskState::Unknown => c.unknown += 1,
            }
        }
        c
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    pub total: usize,
    pub pending: usize,
    pub done: usize,
    pub cancelled: usize,
    pub unknown: usize,
}

/// What a task is waiting on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Waiting {
    /// Another task.
    Task { task: u64 },
    /// `asyncio.gather(...)`: the tasks among its children.
    Gather { tasks: Vec<u64>, others: usize },
    /// Some other future (a queue getter, a lock, `asyncio.sleep`'s...), by type.
    Future { type_name: String },
}

/// One task, described.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskDetail {
    pub addr: u64,
    pub name: String,
    pub state: TaskState,
    /// It is the task running right now on its loop.
    pub running: bool,
    /// The chain of coroutines, innermost first (where it is suspended). For the running
    /// task: its thread's frames down to its own coroutine's frame.
    pub coroutines: Vec<StackFrame>,
    /// What its `_fut_waiter` says it awaits.
    pub waiting: Option<Waiting>,
    /// 3.14+: the tasks the interpreter records as awaiting this one.
    pub recorded_awaiters: Vec<u64>,
    /// 3.14+: recorded awaiters that are not tasks (futures).
    pub recorded_others: usize,
    /// The task whose `TaskGroup` created this one (3.11+).
    pub group_parent: Option<u64>,
}

/// The tasks of the registries, bounded.
pub fn enumerate<M: Memory>(r: &ObjectReader<M>, interp: u64, threads: &[PyThread]) -> Result<TaskSet> {
    let mut addrs: Vec<u64> = Vec::new();
    let mut truncated = false;
    match r.layout().asyncio.registry {
        TaskRegistry::AllTasksWeakSet => {
            if let Some(set) = module_attr(r, interp, "_all_tasks")? {
                truncated |= weakset_members(r, set, &mut addrs)?;
            }
        }
        TaskRegistry::ScheduledAndEager => {
            if let Some(set) = module_attr(r, interp, "_scheduled_tasks")? {
                truncated |= weakset_members(r, set, &mut addrs)?;
            }
            if let Some(eager) = module_attr(r, interp, "_eager_tasks")? {
                let (items, _) = r.set_keys(eager, MAX_TASKS)?;
                truncated |= items.len() >= MAX_TASKS;
                addrs.extend(items);
            }
        }
        TaskRegistry::LinkedLists { task_node, thread_head, interp_head } => {
            let mut heads: Vec<u64> = threads.iter().map(|t| t.tstate + thread_head).collect();
            heads.push(interp + interp_head);
            for head in heads {
                truncated |= walk_list(r, head, task_node, &mut addrs)?;
            }
        }
    }
    let mut seen = HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    let tasks = states(r, &addrs)?;
    Ok(TaskSet { tasks, truncated })
}

fn module_attr<M: Memory>(r: &ObjectReader<M>, interp: u64, name: &str) -> Result<Option<u64>> {
    match interp::module_dict(r, interp, "asyncio.tasks")? {
        Some(d) => r.dict_get_str(d, name),
        None => Ok(None),
    }
}

/// The live members of a `weakref.WeakSet` (its `data` set holds weak references).
fn weakset_members<M: Memory>(r: &ObjectReader<M>, weakset: u64, out: &mut Vec<u64>) -> Result<bool> {
    let data = r.attr(weakset, "data")?;
    let (refs, _) = r.set_keys(data, MAX_TASKS)?;
    let wr = r.layout().containers.weakref_object;
    // Read every reference's target in batches.
    // (Dead references point at None: dropped later, as not tasks.)
    let heads = r.memory().read_batch(&refs.iter().map(|w| w + wr).collect::<Vec<_>>(), 8);
    for raw in heads.into_iter().flatten() {
        let target = le::u64(&raw, 0)?;
        if crate::python::reader::plausible_pointer(target) {
            out.push(target);
        }
    }
    // Cut only when the walk stopped at the limit: the set's `used` count, read apart from
    // its table, may differ from the entries found while tasks come and go.
    Ok(refs.len() >= MAX_TASKS)
}

/// A circular list through `task_node`: `head.next → node → ... → head`.
fn walk_list<M: Memory>(r: &ObjectReader<M>, head: u64, task_node: u64, out: &mut Vec<u64>) -> Result<bool> {
    let mut node = r.ptr(head)?;
    let mut n = 0;
    while node != 0 && node != head {
        if n >= MAX_TASKS {
            return Ok(true);
        }
        out.push(node.checked_sub(task_node).ok_or_else(|| Error::invalid(node, "task list node"))?);
        node = r.ptr(node)?;
        n += 1;
    }
    Ok(false)
}

/// Loop and state of each task: one batched read of each task's header. Objects that are
/// not tasks (dead references read as `None`, third-party futures) are dropped.
fn states<M: Memory>(r: &ObjectReader<M>, addrs: &[u64]) -> Result<Vec<(u64, u64, TaskState)>> {
    let a = r.layout().asyncio;
    let o = r.layout().object;
    let span = (a.fut_state.max(a.fut_loop) + 8) as usize;
    let blocks = r.memory().read_batch(addrs, span);
    let mut out = Vec::with_capacity(addrs.len());
    let mut kinds: HashMap<u64, Option<bool>> = HashMap::new();
    for (addr, block) in addrs.iter().zip(blocks) {
        let Some(block) = block else { continue };
        let word = |at: u64| le::u64(&block, at);
        let tp = word(o.ob_type)?;
        // Per type: a C task (Some(true)), another task class (Some(false)), not a task (None).
        let kind = match kinds.get(&tp) {
            Some(k) => *k,
            None => {
                let k = if !crate::python::reader::plausible_pointer(tp) {
                    None
                } else if r.is_subclass_by_name(tp, "_asyncio.Task").unwrap_or(false) {
                    Some(true)
                } else if r.is_subclass_by_name(tp, "Task").unwrap_or(false) {
                    Some(false)
                } else {
                    None
                };
                kinds.insert(tp, k);
                k
            }
        };
        match kind {
            Some(true) => {
                let state = match le::i32(&block, a.fut_state)? {
                    FUTURE_PENDING => TaskState::Pending,
                    FUTURE_CANCELLED => TaskState::Cancelled,
                    FUTURE_FINISHED => TaskState::Done,
                    _ => continue, // torn: not a state
                };
                out.push((*addr, word(a.fut_loop)?, state));
            }
            Some(false) => {
                let event_loop = r.getattr(*addr, "_loop").ok().flatten().unwrap_or(0);
                out.push((*addr, event_loop, TaskState::Unknown));
            }
            None => {}
        }
    }
    Ok(out)
}

/// What an object met along an await chain is, by its (built-in) type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaitable {
    Coroutine,
    Generator,
    AsyncGenerator,
    /// `async_generator_asend` / `async_generator_athrow`: what `anext(agen)`,
    /// `agen.asend()` and `agen.aclose()` return; it drives the async generator it wraps.
    AsyncGenStep,
    /// Anything else (a future, a `FutureIter`, a user class, even one named like a builtin).
    Other,
}

fn awaitable<M: Memory>(r: &ObjectReader<M>, obj: u64) -> Result<Awaitable> {
    let info = r.type_info_of(obj)?;
    if info.has(crate::python::reader::flags::HEAPTYPE) {
        return Ok(Awaitable::Other);
    }
    Ok(match info.name.as_str() {
        "coroutine" => Awaitable::Coroutine,
        "generator" => Awaitable::Generator,
        "async_generator" => Awaitable::AsyncGenerator,
        "async_generator_asend" | "async_generator_athrow" => Awaitable::AsyncGenStep,
        _ => Awaitable::Other,
    })
}

/// The generator-like object whose frame runs `obj`: itself, or the async generator an
/// asend/athrow step drives (its first field: `ags_gen` / `agt_gen`).
fn frame_owner<M: Memory>(r: &ObjectReader<M>, obj: u64) -> Result<Option<(u64, Awaitable)>> {
    match awaitable(r, obj)? {
        Awaitable::AsyncGenStep => {
            let agen = r.obj_ptr(obj + r.layout().object.head)?;
            Ok((awaitable(r, agen)? == Awaitable::AsyncGenerator).then_some((agen, Awaitable::AsyncGenerator)))
        }
        Awaitable::Other => Ok(None),
        k => Ok(Some((obj, k))),
    }
}

/// The address of a coroutine's (or generator's) frame: the frame object (≤ 3.10), or the
/// interpreter frame embedded in it (3.11+); `None` once it finished.
fn frame_of<M: Memory>(r: &ObjectReader<M>, obj: u64) -> Result<Option<u64>> {
    Ok(match r.layout().coro.frame {
        CoroFrame::Pointer { offset } => Some(r.ptr(obj + offset)?).filter(|f| *f != 0),
        CoroFrame::Embedded { offset } => Some(obj + offset),
    })
}

/// The frame of a task's own coroutine (through an asend/athrow step to its async
/// generator), as it appears in its thread's stack while the task runs.
pub fn task_frame<M: Memory>(r: &ObjectReader<M>, coro: u64) -> Result<Option<u64>> {
    match frame_owner(r, coro)? {
        Some((obj, _)) => frame_of(r, obj),
        None => Ok(None),
    }
}

/// The chain of coroutines a task is suspended in (innermost first), and the object at the
/// end of it (what the innermost awaits), following each suspended frame's value-stack top.
///
/// The chain goes on as the interpreter's own remote inspection does: from a coroutine (or
/// an async generator) into the coroutine it awaits, or into the async generator behind an
/// asend/athrow step; from a generator into the generator it delegates to. Anything else ends
/// it: a future, a task, a `types.coroutine` generator awaited by a coroutine (so
/// `asyncio.sleep(0)` ends at `sleep`).
pub fn coroutine_chain<M: Memory>(r: &ObjectReader<M>, stacks: &mut StackReader, coro: u64) -> Result<(Vec<StackFrame>, Option<u64>)> {
    let (refs, leaf) = coroutine_frames(r, coro)?;
    let chain = refs.iter().map(|f| stacks.frame(r, f)).collect::<Result<Vec<_>>>()?;
    Ok((chain, leaf))
}

/// [`coroutine_chain`] as frames (innermost first), not yet named.
pub fn coroutine_frames<M: Memory>(r: &ObjectReader<M>, coro: u64) -> Result<(Vec<FrameRef>, Option<u64>)> {
    let c = r.layout().coro;
    let mut chain = Vec::new();
    let mut obj = coro;
    let mut leaf = None;
    let mut from: Option<Awaitable> = None;
    for _ in 0..MAX_AWAIT_DEPTH {
        let next = awaitable(r, obj)?;
        let follows = match (from, next) {
            (_, Awaitable::Other) => false,
            (None, _) => true,
            (Some(Awaitable::Coroutine | Awaitable::AsyncGenerator), Awaitable::Coroutine | Awaitable::AsyncGenStep) => true,
            (Some(Awaitable::Generator), Awaitable::Generator) => true,
            _ => false,
        };
        let owner = if follows { frame_owner(r, obj)? } else { None };
        let Some((owner, kind)) = owner else {
            leaf = Some(obj);
            break;
        };
        let Some(frame) = frame_of(r, owner)? else { break };
        let Some(f) = frames::frame_at(r, frame)? else { break };
        chain.push(f);
        let suspended = match c.suspended {
            Suspension::StackTopSet => r.ptr(frame + 72)? != 0,
            Suspension::FrameState { offset, values } => values.contains(&(r.u8(frame + offset)? as i8)),
            Suspension::CoroState { offset, values } => values.contains(&(r.u8(owner + offset)? as i8)),
        };
        if !suspended {
            break;
        }
        match frames::stack_top(r, frame)? {
            Some(n) => obj = n,
            None => break,
        }
        from = Some(kind);
    }
    chain.reverse();
    Ok((chain, leaf))
}

/// The running task's chain, from its thread's frames (`thread`, innermost first): every
/// frame from the innermost down to and including the task's own coroutine frame, plain
/// functions included. `None` when that frame is not on the thread's stack. A chain longer
/// than [`MAX_RUNNING_FRAMES`] is cut in the middle, visibly.
pub fn running_chain<M: Memory>(
    r: &ObjectReader<M>,
    stacks: &mut StackReader,
    coro: u64,
    thread: &[FrameRef],
) -> Result<Option<Vec<StackFrame>>> {
    let Some(frame) = task_frame(r, coro)? else { return Ok(None) };
    // By address: a recursive coroutine runs the same code in several frames.
    let Some(at) = thread.iter().position(|f| f.addr == frame) else { return Ok(None) };
    let keep: Vec<&FrameRef> = if at < MAX_RUNNING_FRAMES {
        thread[..=at].iter().collect()
    } else {
        let half = MAX_RUNNING_FRAMES / 2;
        thread[..half].iter().chain(thread[at + 1 - half..=at].iter()).collect()
    };
    let mut out = Vec::with_capacity(keep.len() + 1);
    for (i, f) in keep.iter().enumerate() {
        if at >= MAX_RUNNING_FRAMES && i == MAX_RUNNING_FRAMES / 2 {
            let omitted = at + 1 - 2 * (MAX_RUNNING_FRAMES / 2);
            out.push(StackFrame { function: format!("[... {omitted} frames not shown ...]").into(), file: "".into(), line: 0 });
        }
        out.push(stacks.frame(r, f)?);
    }
    Ok(Some(out))
}

/// What a task waits on, from its `_fut_waiter`. A gather's children are listed only while
/// pending (a finished child is awaited no more).
fn waiting<M: Memory>(r: &ObjectReader<M>, task: u64) -> Result<Option<Waiting>> {
    let a = r.layout().asyncio;
    let fut = r.ptr(task + a.task_fut_waiter)?;
    if fut == 0 || r.is_none(fut)? {
        return Ok(None);
    }
    if callback::is_task(r, fut)? {
        return Ok(Some(Waiting::Task { task: fut }));
    }
    let type_name = r.type_name(fut)?;
    if type_name == "_GatheringFuture" {
        if let Some(children) = r.getattr(fut, "_children")? {
            let (items, _) = r.list_items(children, MAX_AWAITERS)?;
            let mut tasks = Vec::new();
            let mut others = 0;
            for child in items {
                if callback::is_task(r, child)? {
                    tasks.push(child);
                } else {
                    others += 1;
                }
            }
            return Ok(Some(Waiting::Gather { tasks, others }));
        }
    }
    Ok(Some(Waiting::Future { type_name }))
}

/// 3.14+: the tasks the interpreter records as awaiting `task` (`fut_awaited_by`: one object
/// or a set), and how many awaiting objects are not tasks (futures registered with
/// `asyncio.future_add_to_awaited_by`).
fn recorded_awaiters<M: Memory>(r: &ObjectReader<M>, task: u64, ab: AwaitedBy) -> Result<(Vec<u64>, usize)> {
    let field = r.ptr(task + ab.field)?;
    if field == 0 {
        return Ok((Vec::new(), 0));
    }
    let members = if r.u8(task + ab.is_set)? != 0 { r.set_keys(field, MAX_AWAITERS)?.0 } else { vec![field] };
    let flags = r.memory().read_batch(&members.iter().map(|w| w + ab.is_task).collect::<Vec<_>>(), 1);
    let (mut tasks, mut others) = (Vec::new(), 0);
    for (w, flag) in members.into_iter().zip(flags) {
        let flag = flag.ok_or_else(|| Error::invalid(w, "awaiter unreadable"))?;
        // The flag is a FutureObj field: trust it only on a native future or task.
        if flag[0] != 0 && callback::is_task(r, w)? {
            tasks.push(w);
        } else {
            others += 1;
        }
    }
    Ok((tasks, others))
}

/// The task that owns the `TaskGroup` a task was created in: a done-callback of the task
/// is the bound method `TaskGroup._on_task_done` (in `fut_callback0`, or in the
/// `fut_callbacks` list when something else registered first), its `__self__` is the group,
/// and the group's `_parent_task` is the task that entered it.
fn group_parent<M: Memory>(r: &ObjectReader<M>, stacks: &mut StackReader, task: u64) -> Result<Option<u64>> {
    let a = r.layout().asyncio;
    let mut callbacks = Vec::new();
    let first = r.ptr(task + a.fut_callback0)?;
    if first != 0 {
        callbacks.push(first);
    }
    let rest = r.ptr(task + a.fut_callbacks)?;
    if rest != 0 && !r.is_none(rest)? {
        let (items, _) = r.list_items(rest, MAX_CALLBACKS)?;
        for item in items {
            if let Some(cb) = r.tuple_items(item, 1)?.0.first() {
                callbacks.push(*cb);
            }
        }
    }
    for cb in callbacks {
        let Some(group) = task_group_of(r, stacks, cb)? else { continue };
        let Some(parent) = r.getattr(group, "_parent_task")? else { continue };
        if parent != task && !r.is_none(parent)? && callback::is_task(r, parent)? {
            return Ok(Some(parent));
        }
    }
    Ok(None)
}

/// The `TaskGroup` whose `_on_task_done` the callable is bound to, if it is.
fn task_group_of<M: Memory>(r: &ObjectReader<M>, stacks: &mut StackReader, callable: u64) -> Result<Option<u64>> {
    let info = r.type_info_of(callable)?;
    if info.name != "method" || info.has(crate::python::reader::flags::HEAPTYPE) {
        return Ok(None);
    }
    let c = r.layout().callables;
    let func = r.obj_ptr(callable + c.method_func)?;
    if r.type_name(func)? != "function" || r.name(r.obj_ptr(func + c.func_qualname)?)? != "TaskGroup._on_task_done" {
        return Ok(None);
    }
    // asyncio's own, not a class of the same name elsewhere.
    let code = stacks.code_info(r, r.obj_ptr(func + c.func_code)?)?;
    if !code.filename.ends_with("asyncio/taskgroups.py") {
        return Ok(None);
    }
    Ok(Some(r.obj_ptr(callable + c.method_self)?))
}

/// Describe one task: name, state, coroutine chain, what it waits on, who awaits it. The
/// running task's chain comes from its thread's frames (`thread`, innermost first) when its
/// coroutine's frame is among them.
pub fn describe<M: Memory>(
    r: &ObjectReader<M>,
    stacks: &mut StackReader,
    task: u64,
    state: TaskState,
    running: bool,
    thread: &[FrameRef],
) -> Result<TaskDetail> {
    let name = callback::task_name(r, task)?;
    let coro = callback::task_coro(r, task)?;
    let live = state == TaskState::Pending;
    let mut coroutines = Vec::new();
    if live && running {
        if let Some(chain) = running_chain(r, stacks, coro, thread)? {
            coroutines = chain;
        }
    }
    if live && coroutines.is_empty() {
        coroutines = coroutine_chain(r, stacks, coro)?.0;
    }
    let waiting = if live && !running { waiting(r, task)? } else { None };
    let (recorded, recorded_others) = match r.layout().asyncio.awaited_by {
        Some(ab) if live => recorded_awaiters(r, task, ab)?,
        _ => (Vec::new(), 0),
    };
    let group_parent = if live { group_parent(r, stacks, task)? } else { None };
    Ok(TaskDetail { addr: task, name, state, running, coroutines, waiting, recorded_awaiters: recorded, recorded_others, group_parent })
}

/// Where an edge of the await graph was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeSource {
    /// 3.14+: the interpreter's own record (`Future._asyncio_awaited_by`), kept by awaits of
    /// tasks, `TaskGroup`, `gather`, `shield`, `wait`, `wait_for`, `as_completed`,
    /// `staggered_race`; what `python -m asyncio ps` shows.
    AwaitedBy,
    /// The awaiting task's `_fut_waiter`: the task it awaits, or the pending children of the
    /// `gather` it awaits.
    FutWaiter,
    /// A `TaskGroup` child: its done-callback `TaskGroup._on_task_done` → the group →
    /// `_parent_task`.
    TaskGroup,
}

/// `awaiter` awaits `awaited`; found by each of `sources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub awaiter: u64,
    pub awaited: u64,
    pub sources: Vec<EdgeSource>,
}

/// Who awaits whom between the given tasks, from every source, deduplicated: ordered by the
/// awaiter's place in `details`, then the awaited one's. Only pending (or unknown-state)
/// tasks are awaited. At most [`MAX_EDGES`].
pub fn await_edges(details: &[TaskDetail]) -> Vec<Edge> {
    let index: HashMap<u64, usize> = details.iter().enumerate().map(|(i, d)| (d.addr, i)).collect();
    let mut found: BTreeMap<(usize, usize), Vec<EdgeSource>> = BTreeMap::new();
    let mut add = |awaiter: u64, awaited: u64, source: EdgeSource| {
        let (Some(&i), Some(&j)) = (index.get(&awaiter), index.get(&awaited)) else { return };
        if matches!(details[j].state, TaskState::Done | TaskState::Cancelled) {
            return;
        }
        if found.len() >= MAX_EDGES && !found.contains_key(&(i, j)) {
            return;
        }
        let sources = found.entry((i, j)).or_default();
        if !sources.contains(&source) {
            sources.push(source);
            sources.sort();
        }
    };
    for d in details {
        for w in &d.recorded_awaiters {
            add(*w, d.addr, EdgeSource::AwaitedBy);
        }
        match &d.waiting {
            Some(Waiting::Task { task }) => add(d.addr, *task, EdgeSource::FutWaiter),
            Some(Waiting::Gather { tasks, .. }) => tasks.iter().for_each(|t| add(d.addr, *t, EdgeSource::FutWaiter)),
            _ => {}
        }
        if let Some(parent) = d.group_parent {
            add(parent, d.addr, EdgeSource::TaskGroup);
        }
    }
    found.into_iter().map(|((i, j), sources)| Edge { awaiter: details[i].addr, awaited: details[j].addr, sources }).collect()
}

/// A node of the await tree: a task and the tasks it awaits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeNode {
    pub task: u64,
    pub awaits: Vec<TreeNode>,
    /// This task is already on the path above: the await graph has a cycle here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cycle: bool,
    /// This task (awaited by several) is expanded where it first appears, not here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    /// The tree is [`MAX_TREE_DEPTH`] deep here: what this task awaits is shown as roots.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
}

impl TreeNode {
    fn leaf(task: u64) -> TreeNode {
        TreeNode { task, awaits: Vec::new(), cycle: false, repeat: false, cut: false }
    }
}

/// The await graph as a forest: roots are tasks no task awaits (then, for what only cycles
/// or a cut reach, the first task not placed yet), in `tasks` order. Every edge shows: a task
/// awaited by several appears under each, expanded under the first only (`repeat` elsewhere);
/// a task met again on its own path is marked as a cycle. At most [`MAX_TREE_DEPTH`] levels;
/// the size is bounded by the tasks plus the edges.
pub fn await_tree(tasks: &[u64], edges: &[(u64, u64)]) -> (Vec<TreeNode>, Vec<Vec<u64>>) {
    let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut awaited: HashSet<u64> = HashSet::new();
    for (a, b) in edges {
        children.entry(*a).or_default().push(*b);
        awaited.insert(*b);
    }
    struct Build<'a> {
        children: &'a HashMap<u64, Vec<u64>>,
        path: Vec<u64>,
        placed: HashSet<u64>,
        cycles: Vec<Vec<u64>>,
    }
    impl Build<'_> {
        fn node(&mut self, t: u64) -> TreeNode {
            if let Some(at) = self.path.iter().position(|p| *p == t) {
                let mut cycle = self.path[at..].to_vec();
                cycle.push(t);
                if self.cycles.len() < MAX_CYCLES {
                    self.cycles.push(cycle);
                }
                return TreeNode { cycle: true, ..TreeNode::leaf(t) };
            }
            if self.placed.contains(&t) {
                return TreeNode { repeat: true, ..TreeNode::leaf(t) };
            }
            if self.path.len() >= MAX_TREE_DEPTH {
                return TreeNode { cut: true, ..TreeNode::leaf(t) };
            }
            self.placed.insert(t);
            self.path.push(t);
            let kids = self.children.get(&t).cloned().unwrap_or_default();
            let awaits = kids.into_iter().map(|c| self.node(c)).collect();
            self.path.pop();
            TreeNode { awaits, ..TreeNode::leaf(t) }
        }
    }
    let mut b = Build { children: &children, path: Vec::new(), placed: HashSet::new(), cycles: Vec::new() };
    let mut roots: Vec<TreeNode> = Vec::new();
    for t in tasks.iter().filter(|t| !awaited.contains(t)) {
        if !b.placed.contains(t) {
            roots.push(b.node(*t));
        }
    }
    // Whatever is left is only reachable through cycles, or below a cut.
    for t in tasks {
        if !b.placed.contains(t) {
            roots.push(b.node(*t));
        }
    }
    (roots, b.cycles)
}

/// What a pending task waits on, told from outside: the asyncio function it called (found
/// in its await chain) or, failing that, what its `_fut_waiter` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    Semaphore,
    BoundedSemaphore,
    Lock,
    Event,
    Condition,
    Barrier,
    QueueGet,
    QueuePut,
    QueueJoin,
    /// `asyncio.sleep`.
    Sleep,
    /// A stream's reader (`StreamReader.read*` waiting for data).
    StreamRead,
    /// A stream's writer (`StreamWriter.drain` waiting for the transport to drain).
    StreamWrite,
    /// `loop.sock_recv` / `sock_sendall` / `sock_connect` / `sock_accept`...
    SocketIo,
    /// `asyncio.wait_for`.
    WaitFor,
    /// `asyncio.wait`.
    Wait,
    /// Another task (its `_fut_waiter` is a task).
    Task,
    /// `asyncio.gather(...)`.
    Gather,
    /// A plain future (no asyncio function of the kinds above in its chain).
    Future,
    /// Nothing: it is scheduled to run (or has not started yet), or it is the running task.
    Scheduled,
}

impl WaitKind {
    /// As people say it.
    pub fn label(self) -> &'static str {
        match self {
            WaitKind::Semaphore => "asyncio.Semaphore",
            WaitKind::BoundedSemaphore => "asyncio.BoundedSemaphore",
            WaitKind::Lock => "asyncio.Lock",
            WaitKind::Event => "asyncio.Event",
            WaitKind::Condition => "asyncio.Condition",
            WaitKind::Barrier => "asyncio.Barrier",
            WaitKind::QueueGet => "Queue.get",
            WaitKind::QueuePut => "Queue.put",
            WaitKind::QueueJoin => "Queue.join",
            WaitKind::Sleep => "asyncio.sleep",
            WaitKind::StreamRead => "stream read (I/O)",
            WaitKind::StreamWrite => "stream write/drain (I/O)",
            WaitKind::SocketIo => "socket I/O (loop.sock_*)",
            WaitKind::WaitFor => "asyncio.wait_for",
            WaitKind::Wait => "asyncio.wait",
            WaitKind::Task => "another task",
            WaitKind::Gather => "asyncio.gather",
            WaitKind::Future => "a future",
            WaitKind::Scheduled => "nothing (scheduled to run)",
        }
    }
}

/// asyncio's own functions a task may wait in: `(module file, class, method, kind, whether
/// the object waited on is the frame's `self`)`. The outermost match in a chain wins:
/// `Queue.join` waits in `Event.wait`, `async with sem` in `Semaphore.acquire` (the context
/// manager's `__aenter__` is not listed), `Barrier.wait` in `Condition.wait_for`. The class
/// is told by the code's qualname (3.11+) or, before 3.11 (a code object has only its bare
/// name), by the type of the frame's `self`; a module-level function has no class.
const ASYNCIO_WAITS: &[(&str, Option<&str>, &str, WaitKind, bool)] = &[
    ("locks.py", Some("Semaphore"), "acquire", WaitKind::Semaphore, true),
    ("locks.py", Some("Lock"), "acquire", WaitKind::Lock, true),
    ("locks.py", Some("Event"), "wait", WaitKind::Event, true),
    ("locks.py", Some("Condition"), "wait", WaitKind::Condition, true),
    ("locks.py", Some("Condition"), "wait_for", WaitKind::Condition, true),
    ("locks.py", Some("Barrier"), "wait", WaitKind::Barrier, true),
    ("queues.py", Some("Queue"), "get", WaitKind::QueueGet, true),
    ("queues.py", Some("Queue"), "put", WaitKind::QueuePut, true),
    ("queues.py", Some("Queue"), "join", WaitKind::QueueJoin, true),
    ("tasks.py", None, "sleep", WaitKind::Sleep, false),
    ("tasks.py", None, "wait_for", WaitKind::WaitFor, false),
    ("tasks.py", None, "wait", WaitKind::Wait, false),
    ("streams.py", Some("StreamReader"), "_wait_for_data", WaitKind::StreamRead, true),
    ("streams.py", Some("StreamReader"), "read", WaitKind::StreamRead, true),
    ("streams.py", Some("StreamReader"), "readline", WaitKind::StreamRead, true),
    ("streams.py", Some("StreamReader"), "readexactly", WaitKind::StreamRead, true),
    ("streams.py", Some("StreamReader"), "readuntil", WaitKind::StreamRead, true),
    ("streams.py", Some("StreamWriter"), "drain", WaitKind::StreamWrite, true),
    ("streams.py", Some("FlowControlMixin"), "_drain_helper", WaitKind::StreamWrite, false),
];

/// The entries of [`ASYNCIO_WAITS`] a frame may run, by its file and function name: `(class
/// or None, kind, self is the object, class already confirmed by the qualname)`. A `sock_*`
/// method of an asyncio event loop is socket I/O.
fn asyncio_wait_candidates(function: &str, file: &str) -> Vec<(Option<&'static str>, WaitKind, bool, bool)> {
    let Some((_, module)) = file.rsplit_once("/asyncio/") else { return Vec::new() };
    let (class, method) = match function.rsplit_once('.') {
        Some((q, m)) => (Some(q.rsplit_once('.').map_or(q, |(_, c)| c)), m),
        None => (None, function),
    };
    let mut out = Vec::new();
    for (m, c, name, kind, is_self) in ASYNCIO_WAITS {
        if *m != module || *name != method {
            continue;
        }
        match (c, class) {
            (None, None) => out.push((None, *kind, *is_self, true)),
            (Some(c), Some(q)) if *c == q => out.push((Some(*c), *kind, *is_self, true)),
            (Some(c), None) => out.push((Some(*c), *kind, *is_self, false)),
            _ => {}
        }
    }
    if out.is_empty() && module.ends_with("_events.py") && method.starts_with("sock_") {
        out.push((None, WaitKind::SocketIo, false, true));
    }
    out
}

/// What a frame of asyncio waits in, if it is one of [`ASYNCIO_WAITS`]: the kind and the
/// object (its `self`, where that is what is waited on).
fn asyncio_wait<M: Memory>(r: &ObjectReader<M>, f: &FrameRef, n: &StackFrame) -> Result<Option<(WaitKind, Option<u64>)>> {
    for (class, kind, is_self, confirmed) in asyncio_wait_candidates(&n.function, &n.file) {
        let me = if is_self || !confirmed { frames::local(r, f, 0).ok() } else { None };
        if !confirmed {
            let Some(me) = me else { continue };
            if !r.is_subclass_by_name(r.type_of(me)?, class.unwrap_or_default())? {
                continue;
            }
        }
        return Ok(Some((kind, if is_self { me } else { None })));
    }
    Ok(None)
}

/// Where a pending task waits, and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitSite {
    /// The task's own coroutine, at the line where it is suspended.
    pub coroutine: Option<StackFrame>,
    pub kind: WaitKind,
    /// The asyncio function it waits in (`Semaphore.acquire`), when one of the known ones.
    pub via: Option<String>,
    /// The object waited on, by address: the lock, queue, stream (the asyncio function's
    /// `self`), the awaited task or gather, the future; `None` when it has no identity here
    /// (a sleep's timer, a socket operation's future).
    pub object: Option<u64>,
}

/// Tell where a pending (not running) task waits and on what: the task's coroutine chain
/// (its innermost frames first), the outermost asyncio function of [`ASYNCIO_WAITS`] in it,
/// else its `_fut_waiter`. Reads a few dozen words; bounded by [`MAX_AWAIT_DEPTH`].
pub fn wait_site<M: Memory>(r: &ObjectReader<M>, stacks: &mut StackReader, task: u64) -> Result<WaitSite> {
    let coro = callback::task_coro(r, task)?;
    let (refs, _) = coroutine_frames(r, coro)?;
    let mut named = Vec::with_capacity(refs.len());
    for f in &refs {
        named.push(stacks.frame(r, f)?);
    }
    let coroutine = named.last().cloned();
    // Outermost first: the API the task's own code called.
    for (f, n) in refs.iter().zip(&named).rev() {
        let Some((mut kind, object)) = asyncio_wait(r, f, n)? else { continue };
        if kind == WaitKind::Semaphore {
            if let Some(o) = object {
                if r.is_subclass_by_name(r.type_of(o)?, "BoundedSemaphore")? {
                    kind = WaitKind::BoundedSemaphore;
                }
            }
        }
        return Ok(WaitSite { coroutine, kind, via: Some(n.function.to_string()), object });
    }
    let (kind, object) = match waiting(r, task)? {
        None => (WaitKind::Scheduled, None),
        Some(Waiting::Task { task }) => (WaitKind::Task, Some(task)),
        Some(Waiting::Gather { .. }) => (WaitKind::Gather, Some(r.ptr(task + r.layout().asyncio.task_fut_waiter)?)),
        Some(Waiting::Future { .. }) => (WaitKind::Future, Some(r.ptr(task + r.layout().asyncio.task_fut_waiter)?)),
    };
    Ok(WaitSite { coroutine, kind, via: None, object })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn await_tree_with_gather_and_a_cycle() {
        // 1 awaits 2, 3, 4 (a gather); 5 awaits 6 awaits 5 (a cycle); 7 alone.
        let tasks = [1, 2, 3, 4, 5, 6, 7];
        let edges = [(1, 2), (1, 3), (1, 4), (5, 6), (6, 5)];
        let (roots, cycles) = await_tree(&tasks, &edges);
        let root_ids: Vec<u64> = roots.iter().map(|r| r.task).collect();
        assert_eq!(root_ids, vec![1, 7, 5]);
        assert_eq!(roots[0].awaits.iter().map(|n| n.task).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(cycles, vec![vec![5, 6, 5]]);
        assert!(roots[2].awaits[0].awaits[0].cycle);
    }

    #[test]
    fn a_task_awaited_by_several_shows_under_each_expanded_once() {
        // The TaskGroup c5 graph: 1 awaits 2, 3, 4; 3 and 4 await 2; 2 awaits 5.
        let (roots, cycles) = await_tree(&[1, 2, 3, 4, 5], &[(1, 2), (1, 3), (1, 4), (3, 2), (4, 2), (2, 5)]);
        assert!(cycles.is_empty());
        assert_eq!(roots.len(), 1);
        let r = &roots[0];
        assert_eq!(r.awaits[0].awaits.iter().map(|n| n.task).collect::<Vec<_>>(), vec![5]);
        for n in &r.awaits[1..] {
            assert_eq!(n.awaits.len(), 1);
            assert!(n.awaits[0].repeat && n.awaits[0].task == 2 && n.awaits[0].awaits.is_empty());
        }
    }

    #[test]
    fn deep_and_wide_graphs_stay_bounded() {
        // A chain of 100,000 tasks: no recursion past the depth limit, every task placed.
        let n = 100_000u64;
        let tasks: Vec<u64> = (0..n).collect();
        let edges: Vec<(u64, u64)> = (0..n - 1).map(|i| (i, i + 1)).collect();
        let (roots, _) = await_tree(&tasks, &edges);
        fn count(n: &TreeNode, depth: usize, max: &mut usize) -> usize {
            *max = (*max).max(depth);
            1 + n.awaits.iter().map(|c| count(c, depth + 1, max)).sum::<usize>()
        }
        let (mut max, mut nodes) = (0, 0);
        for r in &roots {
            nodes += count(r, 1, &mut max);
        }
        assert!(max <= MAX_TREE_DEPTH + 1, "{max}");
        assert!(nodes <= tasks.len() + edges.len());
        // Its JSON parses back with a parser's usual nesting limit (serde_json: 128).
        let json = serde_json::to_string(&roots[0]).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
        // Layers of 20 tasks, each awaited by all of the layer above: 2^k paths, yet
        // each task is expanded once.
        let (layers, width) = (30u64, 20u64);
        let tasks: Vec<u64> = (0..layers * width).collect();
        let mut edges = Vec::new();
        for l in 0..layers - 1 {
            for a in 0..width {
                for b in 0..width {
                    edges.push((l * width + a, (l + 1) * width + b));
                }
            }
        }
        let (roots, _) = await_tree(&tasks, &edges);
        let mut max = 0;
        let nodes: usize = roots.iter().map(|r| count(r, 1, &mut max)).sum();
        assert!(nodes <= tasks.len() + edges.len(), "{nodes}");
    }

    fn detail(addr: u64, state: TaskState, waiting: Option<Waiting>) -> TaskDetail {
        TaskDetail {
            addr,
            name: format!("t{addr}"),
            state,
            running: false,
            coroutines: vec![],
            waiting,
            recorded_awaiters: vec![],
            recorded_others: 0,
            group_parent: None,
        }
    }

    #[test]
    fn edges_only_between_known_pending_tasks() {
        let details = vec![
            detail(1, TaskState::Pending, Some(Waiting::Gather { tasks: vec![2, 3, 4, 99], others: 1 })),
            detail(2, TaskState::Pending, Some(Waiting::Future { type_name: "Future".into() })),
            detail(3, TaskState::Pending, Some(Waiting::Task { task: 2 })),
            // A gather's finished child is awaited no more.
            detail(4, TaskState::Done, None),
        ];
        let pairs: Vec<(u64, u64)> = await_edges(&details).iter().map(|e| (e.awaiter, e.awaited)).collect();
        assert_eq!(pairs, vec![(1, 2), (1, 3), (3, 2)]);
    }

    #[test]
    fn edges_from_every_source_merge_with_their_sources() {
        let mut parent = detail(1, TaskState::Pending, Some(Waiting::Future { type_name: "_asyncio.Future".into() }));
        parent.recorded_awaiters = vec![];
        let mut child = detail(2, TaskState::Pending, None);
        child.group_parent = Some(1);
        child.recorded_awaiters = vec![1, 3];
        let mut sub = detail(3, TaskState::Pending, Some(Waiting::Task { task: 2 }));
        sub.group_parent = Some(1);
        let edges = await_edges(&[parent, child, sub]);
        assert_eq!(
            edges,
            vec![
                Edge { awaiter: 1, awaited: 2, sources: vec![EdgeSource::AwaitedBy, EdgeSource::TaskGroup] },
                Edge { awaiter: 1, awaited: 3, sources: vec![EdgeSource::TaskGroup] },
                Edge { awaiter: 3, awaited: 2, sources: vec![EdgeSource::AwaitedBy, EdgeSource::FutWaiter] },
            ]
        );
    }
    #[test]
    fn asyncio_waits_by_module_and_function() {
        let lib = "/usr/lib/python3.12/asyncio/";
        let kinds = |f: &str, m: &str| -> Vec<(Option<&str>, WaitKind, bool)> {
            asyncio_wait_candidates(f, &format!("{lib}{m}")).into_iter().map(|(c, k, _, confirmed)| (c, k, confirmed)).collect()
        };
        // 3.11+: the qualname names the class.
        assert_eq!(kinds("Semaphore.acquire", "locks.py"), vec![(Some("Semaphore"), WaitKind::Semaphore, true)]);
        assert_eq!(kinds("Queue.get", "queues.py"), vec![(Some("Queue"), WaitKind::QueueGet, true)]);
        // Before 3.11: the bare name; `self`'s type decides.
        assert_eq!(
            kinds("acquire", "locks.py"),
            vec![(Some("Semaphore"), WaitKind::Semaphore, false), (Some("Lock"), WaitKind::Lock, false)]
        );
        assert_eq!(kinds("sleep", "tasks.py"), vec![(None, WaitKind::Sleep, true)]);
        assert_eq!(kinds("BaseSelectorEventLoop.sock_recv", "selector_events.py"), vec![(None, WaitKind::SocketIo, true)]);
        // The same names outside asyncio's package are user code; asyncio's other functions are not waits.
        assert!(asyncio_wait_candidates("Semaphore.acquire", "/app/locks.py").is_empty());
        assert!(asyncio_wait_candidates("sleep", "/app/myasyncio/tasks.py").is_empty());
        assert!(kinds("_ContextManagerMixin.__aenter__", "locks.py").is_empty());
        assert!(kinds("Semaphore.sleep", "tasks.py").is_empty());
    }
}
