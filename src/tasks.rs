//! asyncio tasks, read from outside: where each version keeps them, each task's name and
//! state, the chain of coroutines where it is suspended, and which task awaits which.
//!
//! Bounded everywhere: registries are walked up to [`MAX_TASKS`], details are read for at
//! most the number asked, and every list says when it was cut. Reads are batched where the
//! registry allows (sets); the 3.14+ linked lists are walked node by node.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::callback;
use crate::frames::{self, StackFrame, StackReader};
use crate::interp::{self, PyThread};
use crate::layout::{CoroFrame, Suspension, TaskRegistry, FUTURE_CANCELLED, FUTURE_FINISHED, FUTURE_PENDING};
use crate::memory::Memory;
use crate::reader::{limits, Error, ObjectReader, Result};

/// Most tasks walked in one registry (a bigger registry is reported as cut).
pub const MAX_TASKS: usize = 1_000_000;
/// Deepest chain of awaiting coroutines followed.
pub const MAX_AWAIT_DEPTH: usize = 64;

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
    /// The chain of coroutines, innermost first (where it is suspended).
    pub coroutines: Vec<StackFrame>,
    pub waiting: Option<Waiting>,
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
                let (items, _) = r.set_items(eager, MAX_TASKS)?;
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
    let (refs, _) = r.set_items(data, MAX_TASKS)?;
    let wr = r.layout().containers.weakref_object;
    // Read every reference's target in batches.
    // (Dead references point at None: dropped later, as not tasks.)
    let heads = r.memory().read_batch(&refs.iter().map(|w| w + wr).collect::<Vec<_>>(), 8);
    for raw in heads.into_iter().flatten() {
        let target = u64::from_le_bytes(raw.try_into().unwrap());
        if crate::reader::plausible_pointer(target) {
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
        let word = |at: u64| u64::from_le_bytes(block[at as usize..at as usize + 8].try_into().unwrap());
        let tp = word(o.ob_type);
        // Per type: a C task (Some(true)), another task class (Some(false)), not a task (None).
        let kind = match kinds.get(&tp) {
            Some(k) => *k,
            None => {
                let k = if !crate::reader::plausible_pointer(tp) {
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
                let state = match i32::from_le_bytes(block[a.fut_state as usize..a.fut_state as usize + 4].try_into().unwrap()) {
                    FUTURE_PENDING => TaskState::Pending,
                    FUTURE_CANCELLED => TaskState::Cancelled,
                    FUTURE_FINISHED => TaskState::Done,
                    _ => continue, // torn: not a state
                };
                out.push((*addr, word(a.fut_loop), state));
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

/// The chain of coroutines a task is suspended in (innermost first), and the object at the
/// end of it (what the innermost awaits), following each suspended frame's value-stack top.
pub fn coroutine_chain<M: Memory>(r: &ObjectReader<M>, stacks: &mut StackReader, coro: u64) -> Result<(Vec<StackFrame>, Option<u64>)> {
    let c = r.layout().coro;
    let mut chain = Vec::new();
    let mut obj = coro;
    let mut leaf = None;
    for _ in 0..MAX_AWAIT_DEPTH {
        let tp = r.type_name(obj)?;
        if !matches!(tp.as_str(), "coroutine" | "generator" | "async_generator") {
            leaf = Some(obj);
            break;
        }
        let frame = match c.frame {
            CoroFrame::Pointer { offset } => r.ptr(obj + offset)?,
            CoroFrame::Embedded { offset } => obj + offset,
        };
        if frame == 0 {
            break; // finished
        }
        let Some(f) = frames::frame_at(r, frame)? else { break };
        chain.push(stacks.frame(r, &f)?);
        let suspended = match c.suspended {
            Suspension::StackTopSet => r.ptr(frame + 72)? != 0,
            Suspension::FrameState { offset, values } => values.contains(&(r.u8(frame + offset)? as i8)),
            Suspension::CoroState { offset, values } => values.contains(&(r.u8(obj + offset)? as i8)),
        };
        if !suspended {
            break;
        }
        match frames::stack_top(r, frame)? {
            Some(next) => obj = next,
            None => break,
        }
    }
    chain.reverse();
    Ok((chain, leaf))
}

/// What a task waits on, from its `_fut_waiter`.
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
            let (items, _) = r.list_items(children, limits::ITEMS)?;
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

/// Describe one task: name, state, coroutine chain, what it waits on.
pub fn describe<M: Memory>(
    r: &ObjectReader<M>,
    stacks: &mut StackReader,
    task: u64,
    state: TaskState,
    running: bool,
) -> Result<TaskDetail> {
    let name = callback::task_name(r, task)?;
    let coro = callback::task_coro(r, task)?;
    let coroutines = if state == TaskState::Pending { coroutine_chain(r, stacks, coro)?.0 } else { Vec::new() };
    let waiting = if state == TaskState::Pending && !running { waiting(r, task)? } else { None };
    Ok(TaskDetail { addr: task, name, state, running, coroutines, waiting })
}

/// Who awaits whom: edges `awaiter → awaited` between the given tasks.
pub fn await_edges(details: &[TaskDetail]) -> Vec<(u64, u64)> {
    let known: HashSet<u64> = details.iter().map(|d| d.addr).collect();
    let mut edges = Vec::new();
    for d in details {
        match &d.waiting {
            Some(Waiting::Task { task }) if known.contains(task) => edges.push((d.addr, *task)),
            Some(Waiting::Gather { tasks, .. }) => edges.extend(tasks.iter().filter(|t| known.contains(t)).map(|t| (d.addr, *t))),
            _ => {}
        }
    }
    edges
}

/// A node of the await tree: a task and the tasks it awaits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeNode {
    pub task: u64,
    pub awaits: Vec<TreeNode>,
    /// This task is already on the path above: the await graph has a cycle here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cycle: bool,
}

/// The await graph as a forest: roots are tasks no task awaits (or, for a pure cycle, its
/// first member); a task met again on its own path is marked as a cycle and not expanded.
pub fn await_tree(tasks: &[u64], edges: &[(u64, u64)]) -> (Vec<TreeNode>, Vec<Vec<u64>>) {
    let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut awaited: HashSet<u64> = HashSet::new();
    for (a, b) in edges {
        children.entry(*a).or_default().push(*b);
        awaited.insert(*b);
    }
    let mut cycles = Vec::new();
    let mut placed: HashSet<u64> = HashSet::new();
    fn build(
        t: u64,
        children: &HashMap<u64, Vec<u64>>,
        path: &mut Vec<u64>,
        placed: &mut HashSet<u64>,
        cycles: &mut Vec<Vec<u64>>,
    ) -> TreeNode {
        if let Some(at) = path.iter().position(|p| *p == t) {
            let mut cycle = path[at..].to_vec();
            cycle.push(t);
            cycles.push(cycle);
            return TreeNode { task: t, awaits: Vec::new(), cycle: true };
        }
        placed.insert(t);
        path.push(t);
        let awaits = children.get(&t).map(|c| c.iter().map(|c| build(*c, children, path, placed, cycles)).collect()).unwrap_or_default();
        path.pop();
        TreeNode { task: t, awaits, cycle: false }
    }
    let mut roots: Vec<TreeNode> = Vec::new();
    for t in tasks.iter().filter(|t| !awaited.contains(t)) {
        roots.push(build(*t, &children, &mut Vec::new(), &mut placed, &mut cycles));
    }
    // Whatever is left is only reachable through cycles.
    for t in tasks {
        if !placed.contains(t) {
            roots.push(build(*t, &children, &mut Vec::new(), &mut placed, &mut cycles));
        }
    }
    (roots, cycles)
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
    fn edges_only_between_known_tasks() {
        let d = |addr: u64, waiting: Option<Waiting>| TaskDetail {
            addr,
            name: format!("t{addr}"),
            state: TaskState::Pending,
            running: false,
            coroutines: vec![],
            waiting,
        };
        let details = vec![
            d(1, Some(Waiting::Gather { tasks: vec![2, 3, 99], others: 1 })),
            d(2, Some(Waiting::Future { type_name: "Future".into() })),
            d(3, Some(Waiting::Task { task: 2 })),
        ];
        assert_eq!(await_edges(&details), vec![(1, 2), (1, 3), (3, 2)]);
    }
}
