//! `loopspy dump`: one look at a process, as a report (the JSON document) and as text.
//!
//! The report is plain data built from a [`ProcessView`]; its schema is documented in
//! `docs/json-schema.md` and its `schema_version` changes when a field changes meaning.

use std::fmt::Write as _;

use serde::Serialize;

use crate::asyncio::callback::CallbackKind;
use crate::asyncio::eventloop::LoopKind;
use crate::asyncio::executor::{ExecutorView, WorkerState};
use crate::asyncio::loopstate::LoopState;
use crate::asyncio::tasks::{EdgeSource, TaskCounts, TaskState, TreeNode, Waiting};
use crate::base::error::{ProcessBrief, ThreadBrief};
use crate::capture::snapshot::{LoopTasks, LoopView, ProcessView};
use crate::process::procfs::{self, Syscall};
use crate::python::gc::GcAt;
use crate::python::published::LayoutCheck;

pub const SCHEMA_VERSION: u32 = 1;

/// The document of `dump` on one process.
#[derive(Debug, Clone, Serialize)]
pub struct DumpReport {
    pub schema_version: u32,
    #[serde(flatten)]
    pub process: ProcessReport,
}

/// The document of `dump --subprocesses`: a parent and its descendants.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub schema_version: u32,
    pub subprocesses: bool,
    /// The parent: the PID given, or the program started.
    pub pid: i32,
    pub command: Vec<String>,
    /// `len(processes)`.
    pub process_count: usize,
    /// Every process of the tree that runs an event loop, the parent first (if it runs one),
    /// then in the order they were found.
    pub processes: Vec<FleetProcess>,
    /// The other processes of the tree, and why each is not in `processes`.
    pub others: Vec<ProcessBrief>,
}

/// One process of a [`FleetReport`].
#[derive(Debug, Clone, Serialize)]
pub struct FleetProcess {
    pub parent_pid: Option<i32>,
    #[serde(flatten)]
    pub process: ProcessReport,
}

/// One process looked at: what `dump` prints for it.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub pid: i32,
    pub command: Vec<String>,
    pub python: PythonReport,
    /// Where the object layout came from (table, or the interpreter's own debug offsets).
    pub layout: LayoutCheck,
    pub loop_count: usize,
    pub loops: Vec<LoopReport>,
    pub threads: Vec<ThreadBrief>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PythonReport {
    pub version: String,
    pub executable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoopReport {
    pub thread: ThreadReport,
    /// `id(loop)` in hex.
    pub loop_address: String,
    pub loop_class: String,
    pub loop_kind: LoopKind,
    pub state: StateReport,
    /// `len(loop._ready)`.
    pub ready: u64,
    pub timers: TimersReport,
    /// Overdue time of the earliest live timer, ≥ 0 (0 when nothing is due yet).
    pub lag_ms: Option<f64>,
    pub fds: Option<u64>,
    pub selector: Option<String>,
    pub callback: Option<CallbackReport>,
    pub stack: Vec<FrameReport>,
    /// The loop's asyncio tasks (absent with `--max-tasks 0`).
    pub tasks: Option<TasksReport>,
    /// The loop's default executor (`run_in_executor(None, ...)`, `asyncio.to_thread`):
    /// null until the loop made one, or when it is not a `ThreadPoolExecutor`.
    pub executor: Option<ExecutorReport>,
    /// What this one look shows is wrong (`analysis::diagnosis::for_snapshot`), most urgent
    /// first; empty when it shows nothing.
    pub diagnoses: Vec<crate::analysis::diagnosis::Diagnosis>,
}

/// A loop's default executor at the moment of the look.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutorReport {
    /// Its class (`ThreadPoolExecutor` or a subclass).
    pub class: String,
    pub address: String,
    /// `_max_workers`: the most worker threads it starts.
    pub max_workers: u64,
    /// Worker threads started (`len(_threads)`).
    pub workers: u64,
    /// Workers running a work item at the moment of the look.
    pub busy: u64,
    /// Work items waiting in its queue for a free worker.
    pub queued: u64,
    pub shutdown: bool,
    /// Every worker busy, at the limit, and work queued.
    pub saturated: bool,
    /// The workers (at most 256), in the order the executor keeps them.
    pub threads: Vec<WorkerReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    /// `Thread.name`.
    pub name: Option<String>,
    pub native_id: Option<i32>,
    pub state: WorkerState,
    /// The function its work item runs (the outermost frame above the executor's own).
    pub work: Option<FrameReport>,
    /// Its innermost frame while busy.
    pub at: Option<FrameReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TasksReport {
    pub counts: TaskCounts,
    /// The interpreter's task registry held more tasks than loopspy walks.
    pub registry_truncated: bool,
    /// Tasks described in `list` (running first, then pending, then finished).
    pub shown: usize,
    /// Tasks counted but not described (over `--max-tasks`, or finishing while read).
    pub not_shown: usize,
    pub list: Vec<TaskEntry>,
    /// Every await edge between the tasks of `list`, with where it was found.
    pub edges: Vec<EdgeReport>,
    /// Who awaits whom: roots are tasks no task awaits.
    pub tree: Vec<TreeReport>,
    /// Await cycles, each as task names with the first repeated at the end.
    pub cycles: Vec<Vec<String>>,
    /// The pending tasks grouped by coroutine and what they wait on, largest first.
    pub groups: crate::capture::task_groups::TaskGroupsReport,
}

/// A reference to a task: names are not unique, addresses are.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRef {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskEntry {
    pub name: String,
    pub address: String,
    pub state: TaskState,
    pub running: bool,
    /// Where it is suspended: its chain of coroutines, innermost first.
    pub coroutines: Vec<FrameReport>,
    pub waiting: Option<WaitingReport>,
    /// The tasks it awaits (every source).
    pub awaits: Vec<LinkRef>,
    /// The tasks that await it (every source).
    pub awaited_by: Vec<LinkRef>,
    /// 3.14+: awaiting objects the interpreter records that are not tasks (futures).
    pub awaited_by_others: usize,
}

/// The task at the other end of an await edge, and where the edge was found.
#[derive(Debug, Clone, Serialize)]
pub struct LinkRef {
    pub name: String,
    pub address: String,
    pub sources: Vec<EdgeSource>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EdgeReport {
    pub awaiter: TaskRef,
    pub awaited: TaskRef,
    pub sources: Vec<EdgeSource>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitingReport {
    Task { task: TaskRef },
    Gather { tasks: Vec<TaskRef>, others: usize },
    Future { type_name: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct TreeReport {
    #[serde(flatten)]
    pub task: TaskRef,
    pub awaits: Vec<TreeReport>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cycle: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadReport {
    pub native_id: Option<i32>,
    pub host_tid: Option<i32>,
    pub ident: u64,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateReport {
    pub state: LoopState,
    pub description: &'static str,
    /// The system call the loop thread is blocked in, if any.
    pub syscall: Option<String>,
    /// True when the thread was on a CPU (in user space) at the moment of reading.
    pub on_cpu: Option<bool>,
    /// How long the loop has been in this state, when it can be known from one look.
    pub for_ms: Option<f64>,
    /// Was the interpreter collecting garbage at that moment (`None`: its GC state could not
    /// be read), and which generation (`None`: not told).
    pub gc_collecting: Option<bool>,
    pub gc_generation: Option<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimersReport {
    /// `len(loop._scheduled)`, cancelled timers included.
    pub count: u64,
    pub earliest: Option<EarliestTimer>,
    /// The earliest live timer already due and waiting in the ready queue behind the callback
    /// that runs (asyncio's loops move due timers there before running them).
    pub earliest_in_ready: Option<EarliestTimer>,
    /// False when the timers kept changing while they were read (or too many cancelled ones
    /// hid the earliest live one): `earliest` and `lag_ms` are then unknown (null).
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EarliestTimer {
    /// `TimerHandle.when()`, in `loop.time()` seconds.
    pub when: f64,
    /// Milliseconds until it is due; negative when overdue.
    pub due_in_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallbackReport {
    pub kind: CallbackKind,
    pub qualname: String,
    pub task: Option<TaskReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub name: String,
    pub coro: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameReport {
    pub function: String,
    pub file: String,
    pub line: i32,
}

/// Facts about the process that are not part of a look.
#[derive(Debug, Clone)]
pub struct ProcessFacts {
    pub pid: i32,
    pub command: Vec<String>,
    pub version: String,
    pub executable: Option<String>,
    pub layout: LayoutCheck,
}

pub fn report(facts: ProcessFacts, view: &ProcessView) -> DumpReport {
    DumpReport { schema_version: SCHEMA_VERSION, process: process_report(facts, view) }
}

/// The report of a tree: its processes with loops (each with its parent's PID) and the others.
pub fn fleet_report(
    root: i32,
    command: Vec<String>,
    processes: Vec<(Option<i32>, ProcessFacts, &ProcessView)>,
    others: Vec<ProcessBrief>,
) -> FleetReport {
    let processes: Vec<FleetProcess> =
        processes.into_iter().map(|(parent_pid, facts, view)| FleetProcess { parent_pid, process: process_report(facts, view) }).collect();
    FleetReport {
        schema_version: SCHEMA_VERSION,
        subprocesses: true,
        pid: root,
        command,
        process_count: processes.len(),
        processes,
        others,
    }
}

fn process_report(facts: ProcessFacts, view: &ProcessView) -> ProcessReport {
    ProcessReport {
        pid: facts.pid,
        command: facts.command,
        python: PythonReport { version: facts.version, executable: facts.executable },
        layout: facts.layout,
        loop_count: view.loops.len(),
        loops: view.loops.iter().map(loop_report).collect(),
        threads: view.threads.clone(),
    }
}

fn loop_report(l: &LoopView) -> LoopReport {
    let lateness = l.timer_lateness();
    LoopReport {
        thread: ThreadReport {
            native_id: l.thread.native_id,
            host_tid: l.thread.host_tid,
            ident: l.thread.ident,
            name: l.thread_name.clone(),
        },
        loop_address: format!("{:#x}", l.addr),
        loop_class: l.class_name.clone(),
        loop_kind: l.kind,
        state: StateReport {
            state: l.state,
            description: l.state.describe(l.kind),
            syscall: match l.syscall {
                Some(Syscall::In(nr)) => Some(procfs::syscall_name(nr).map(str::to_string).unwrap_or_else(|| format!("syscall {nr}"))),
                _ => None,
            },
            on_cpu: l.syscall.map(|s| s == Syscall::Running),
            for_ms: l.busy_for.map(|s| s * 1e3),
            gc_collecting: match l.gc {
                GcAt::Unknown => None,
                at => Some(at.collecting()),
            },
            gc_generation: match l.gc {
                GcAt::Collecting(g) => g,
                _ => None,
            },
        },
        ready: l.figures.ready,
        timers: TimersReport {
            count: l.figures.timers,
            earliest: l.figures.earliest_timer.map(|when| EarliestTimer { when, due_in_ms: (when - l.read_at) * 1e3 }),
            earliest_in_ready: l.figures.ready_timer.map(|when| EarliestTimer { when, due_in_ms: (when - l.read_at) * 1e3 }),
            complete: l.figures.timers_known,
        },
        lag_ms: lateness.filter(|_| l.figures.timers_known).map(|late| (late * 1e3).max(0.0)),
        fds: l.figures.fds,
        selector: l.figures.selector.clone(),
        callback: l.callback.as_ref().map(|c| CallbackReport {
            kind: c.kind,
            qualname: c.qualname.clone(),
            task: c.task.as_ref().map(|t| TaskReport { name: t.name.clone(), coro: t.coro.clone() }),
        }),
        stack: l.stack.iter().map(frame_report).collect(),
        tasks: l.tasks.as_ref().map(tasks_report),
        executor: l.executor.as_ref().map(executor_report),
        diagnoses: crate::analysis::diagnosis::for_snapshot(&crate::analysis::diagnosis::SnapshotInputs::new(l)),
    }
}

fn executor_report(x: &ExecutorView) -> ExecutorReport {
    ExecutorReport {
        class: x.class_name.clone(),
        address: format!("{:#x}", x.addr),
        max_workers: x.max_workers,
        workers: x.threads,
        busy: x.busy,
        queued: x.queued,
        shutdown: x.shutdown,
        saturated: x.saturated(),
        threads: x
            .workers
            .iter()
            .map(|w| WorkerReport {
                name: w.name.clone(),
                native_id: w.native_id,
                state: w.state,
                work: w.work.as_ref().map(frame_report),
                at: w.at.as_ref().map(frame_report),
            })
            .collect(),
    }
}

/// The executor's lines for a terminal.
fn render_executor(out: &mut String, x: &ExecutorReport) {
    let _ = writeln!(
        out,
        "  executor   {}: {}/{} workers busy (max_workers {}), {} work item{} queued{}{}",
        e(&x.class),
        x.busy,
        x.workers,
        x.max_workers,
        x.queued,
        if x.queued == 1 { "" } else { "s" },
        if x.saturated { "; SATURATED" } else { "" },
        if x.shutdown { "; shut down" } else { "" },
    );
    let width = x.threads.iter().map(|w| w.name.as_deref().map_or(1, |n| e(n).chars().count())).max().unwrap_or(1).clamp(1, 40);
    for w in &x.threads {
        let name = w.name.as_deref().map(e).unwrap_or("?".into());
        let id = w.native_id.map(|n| format!(" ({n})")).unwrap_or_default();
        let what = match (&w.work, &w.at) {
            (Some(work), Some(at)) if at.function != work.function || at.file != work.file => {
                format!("  {} in {}", frame_text(work), frame_text(at))
            }
            (Some(work), _) => format!("  {}", frame_text(work)),
            (None, Some(at)) => format!("  in {}", frame_text(at)),
            (None, None) => String::new(),
        };
        let state = match w.state {
            WorkerState::Busy => "busy",
            WorkerState::Idle => "idle",
            WorkerState::Unknown => "?",
        };
        let _ = writeln!(out, "    {name:<width$}{id} {state:<4}{what}");
    }
}

fn frame_report(f: &crate::python::frames::StackFrame) -> FrameReport {
    FrameReport { function: f.function.to_string(), file: f.file.to_string(), line: f.line }
}

fn tasks_report(t: &LoopTasks) -> TasksReport {
    let names: std::collections::HashMap<u64, String> = t.details.iter().map(|d| (d.addr, d.name.clone())).collect();
    let task_ref = |addr: u64| TaskRef { name: names.get(&addr).cloned().unwrap_or_else(|| "?".into()), address: format!("{addr:#x}") };
    let edges = &t.edges;
    let link = |addr: u64, sources: &[EdgeSource]| {
        let r = task_ref(addr);
        LinkRef { name: r.name, address: r.address, sources: sources.to_vec() }
    };
    let list = t
        .details
        .iter()
        .map(|d| TaskEntry {
            name: d.name.clone(),
            address: format!("{:#x}", d.addr),
            state: d.state,
            running: d.running,
            coroutines: d.coroutines.iter().map(frame_report).collect(),
            waiting: d.waiting.as_ref().map(|w| match w {
                Waiting::Task { task } => WaitingReport::Task { task: task_ref(*task) },
                Waiting::Gather { tasks, others } => {
                    WaitingReport::Gather { tasks: tasks.iter().map(|t| task_ref(*t)).collect(), others: *others }
                }
                Waiting::Future { type_name } => WaitingReport::Future { type_name: type_name.clone() },
            }),
            awaits: edges.iter().filter(|e| e.awaiter == d.addr).map(|e| link(e.awaited, &e.sources)).collect(),
            awaited_by: edges.iter().filter(|e| e.awaited == d.addr).map(|e| link(e.awaiter, &e.sources)).collect(),
            awaited_by_others: d.recorded_others,
        })
        .collect();
    fn tree(n: &TreeNode, task_ref: &dyn Fn(u64) -> TaskRef) -> TreeReport {
        TreeReport {
            task: task_ref(n.task),
            awaits: n.awaits.iter().map(|c| tree(c, task_ref)).collect(),
            cycle: n.cycle,
            repeat: n.repeat,
            cut: n.cut,
        }
    }
    TasksReport {
        counts: t.counts,
        registry_truncated: t.registry_truncated,
        shown: t.details.len(),
        not_shown: t.not_shown,
        list,
        edges: edges
            .iter()
            .map(|e| EdgeReport { awaiter: task_ref(e.awaiter), awaited: task_ref(e.awaited), sources: e.sources.clone() })
            .collect(),
        tree: t.tree.iter().map(|n| tree(n, &task_ref)).collect(),
        cycles: t.cycles.iter().map(|c| c.iter().map(|a| task_ref(*a).name).collect()).collect(),
        groups: crate::capture::task_groups::TaskGroupsReport::of(&t.groups, None),
    }
}

/// The task groups for a terminal: a heading, then one line per group.
pub fn render_task_groups(out: &mut String, g: &crate::capture::task_groups::TaskGroupsReport, indent: &str) {
    if g.groups.is_empty() {
        return;
    }
    let how = if g.sampled {
        format!("{} of {} examined, counts estimated", g.examined, g.pending)
    } else {
        format!("all {} examined", g.examined)
    };
    let _ = writeln!(out, "{indent}pending tasks by coroutine and what they wait on ({how}):");
    for x in &g.groups {
        let _ = writeln!(out, "{indent}  {}{:>6}  {}", if g.sampled { "~" } else { " " }, x.estimated, task_group_text(x));
    }
    if g.other_tasks > 0 {
        let _ = writeln!(out, "{indent}  ({} examined tasks in smaller groups)", g.other_tasks);
    }
}

/// `coroutine (file:line) waits on WHAT`, escaped for a terminal.
pub fn task_group_text(x: &crate::capture::task_groups::TaskGroup) -> String {
    let what = x.waits_on.label();
    let object = match (&x.object, &x.object_name, &x.object_type) {
        (Some(a), Some(name), _) => format!(" {} at {a} (all the same)", e(name)),
        (Some(a), None, Some(tp)) => format!(" (all on one {} at {a})", e(tp)),
        (Some(a), None, None) => format!(" (all on one object at {a})"),
        (None, _, _) if x.objects > 1 => {
            format!(" ({} distinct objects)", if x.objects >= 64 { "64+".to_string() } else { x.objects.to_string() })
        }
        _ => String::new(),
    };
    format!("{} ({}:{}) waits on {what}{object}", e(&x.function), e(&x.file), x.line)
}

/// The task table (and with `tree`, the await tree) for a terminal.
fn render_tasks(out: &mut String, t: &TasksReport, tree: bool) {
    let c = &t.counts;
    let _ = writeln!(
        out,
        "  tasks      {} ({} pending, {} done, {} cancelled{}){}",
        c.total,
        c.pending,
        c.done,
        c.cancelled,
        if c.unknown > 0 { format!(", {} of other classes", c.unknown) } else { String::new() },
        if t.registry_truncated { "; the registry was cut at 1,000,000 tasks" } else { "" },
    );
    if t.list.is_empty() {
        return;
    }
    let width = t.list.iter().map(|d| d.name.chars().count()).max().unwrap_or(4).clamp(4, 32);
    for d in &t.list {
        let state = if d.running { "RUNNING".to_string() } else { format!("{:?}", d.state).to_lowercase() };
        let at = d.coroutines.first().map(frame_text).unwrap_or_default();
        let awaited: Vec<String> = d.awaits.iter().map(|l| e(&l.name).into_owned()).collect();
        let waiting = match &d.waiting {
            Some(WaitingReport::Gather { .. }) => String::new(),
            _ if !awaited.is_empty() => format!(
                "  awaits task{} {}",
                if awaited.len() == 1 { "" } else { "s" },
                if awaited.len() > 6 { format!("{}, ... ({} in all)", awaited[..5].join(", "), awaited.len()) } else { awaited.join(", ") }
            ),
            _ => String::new(),
        };
        let waiting = match &d.waiting {
            _ if !waiting.is_empty() => waiting,
            Some(WaitingReport::Task { task }) => format!("  awaits task {}", e(&task.name)),
            Some(WaitingReport::Gather { tasks, others }) => format!(
                "  awaits gather({}{})",
                tasks.iter().map(|t| e(&t.name).into_owned()).collect::<Vec<_>>().join(", "),
                if *others > 0 { format!(" + {others} futures") } else { String::new() }
            ),
            Some(WaitingReport::Future { type_name }) => format!("  awaits a {}", e(type_name)),
            None => String::new(),
        };
        let _ = writeln!(out, "    {:<width$} {:<9} {at}{waiting}", e(&d.name), state);
        for f in d.coroutines.iter().skip(1) {
            let _ = writeln!(out, "    {:<width$} {:<9}   <- {}", "", "", frame_text(f));
        }
    }
    if t.not_shown > 0 {
        let _ = writeln!(out, "    ... {} more not shown (--max-tasks)", t.not_shown);
    }
    if tree {
        let _ = writeln!(out, "  await tree (a task, then the tasks it awaits):");
        fn walk(out: &mut String, n: &TreeReport, prefix: &str, last: bool, root: bool) {
            let (branch, next) = if root {
                ("", "")
            } else if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            let cycle = if n.cycle {
                "  (cycle: already above)"
            } else if n.repeat {
                "  (also awaited above; shown there)"
            } else if n.cut {
                "  (too deep: what it awaits is shown as a root)"
            } else {
                ""
            };
            let _ = writeln!(out, "    {prefix}{branch}{}{cycle}", e(&n.task.name));
            let child_prefix = format!("{prefix}{next}");
            for (i, c) in n.awaits.iter().enumerate() {
                walk(out, c, &child_prefix, i + 1 == n.awaits.len(), false);
            }
        }
        for n in &t.tree {
            walk(out, n, "", true, true);
        }
        for c in &t.cycles {
            let _ = writeln!(out, "    cycle: {}", c.iter().map(|n| e(n).into_owned()).collect::<Vec<_>>().join(" -> "));
        }
    }
}

/// A string from the target, for a terminal.
fn e(s: &str) -> std::borrow::Cow<'_, str> {
    crate::base::escape::terminal(s)
}

/// `function (file:line)`, escaped for a terminal.
fn frame_text(f: &FrameReport) -> String {
    format!("{} ({}:{})", e(&f.function), e(&f.file), f.line)
}

fn ms(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.1} s", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// The report for a terminal; `tree` adds each loop's await tree.
pub fn render_text(rep: &DumpReport, tree: bool) -> String {
    render_process(&rep.process, tree)
}

/// A tree's report for a terminal: a line per process, then each process as `dump` shows one.
pub fn render_fleet_text(rep: &FleetReport, tree: bool) -> String {
    let mut out = String::new();
    let n = rep.process_count;
    let _ = writeln!(
        out,
        "PID {} and its subprocesses: {} process{} with an event loop{}",
        rep.pid,
        n,
        if n == 1 { "" } else { "es" },
        if n == 0 { "" } else { ":" }
    );
    for p in &rep.processes {
        let role = if p.process.pid == rep.pid {
            "the parent".to_string()
        } else {
            p.parent_pid.map(|pp| format!("child of {pp}")).unwrap_or_else(|| "parent unknown".into())
        };
        let loops = p.process.loop_count;
        let _ = writeln!(
            out,
            "  PID {} ({role}): {} event loop{}, {}",
            p.process.pid,
            loops,
            if loops == 1 { "" } else { "s" },
            shorten(&e(&p.process.command.join(" ")), 100)
        );
    }
    if !rep.others.is_empty() {
        let _ = writeln!(out, "Also in the tree, not shown:");
        for o in &rep.others {
            let _ = writeln!(out, "  PID {} ({}): {}", o.pid, e(&o.why), shorten(&e(&o.command.join(" ")), 100));
        }
    }
    for p in &rep.processes {
        let _ = writeln!(out, "\n======== PID {} ========", p.process.pid);
        out.push_str(&render_process(&p.process, tree));
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        s.chars().take(max - 3).collect::<String>() + "..."
    } else {
        s.to_string()
    }
}

fn render_process(rep: &ProcessReport, tree: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "PID {}: {}", rep.pid, e(&rep.command.join(" ")));
    let _ = writeln!(
        out,
        "Python {}{}, {} event loop{}",
        e(&rep.python.version),
        rep.python.executable.as_deref().map(|x| format!(" ({})", e(x))).unwrap_or_default(),
        rep.loop_count,
        if rep.loop_count == 1 { "" } else { "s" }
    );
    for l in &rep.loops {
        out.push('\n');
        let thread = format!(
            "Thread {}{}{}",
            l.thread.native_id.map(|t| t.to_string()).unwrap_or_else(|| format!("{:#x}", l.thread.ident)),
            host_tid_note(l.thread.native_id, l.thread.host_tid),
            l.thread.name.as_deref().map(|n| format!(" \"{}\"", e(n))).unwrap_or_default()
        );
        let _ = writeln!(out, "{thread}: {} ({:?})", e(&l.loop_class), l.loop_kind);
        let mut state = l.state.description.to_uppercase();
        if l.state.state == LoopState::Callback {
            state = format!("BUSY, {}", l.state.description);
        }
        if let Some(ms_busy) = l.state.for_ms {
            state = format!("{state} for {}", ms(ms_busy));
        }
        let how = match (&l.state.syscall, l.state.on_cpu) {
            (Some(sc), _) => format!(" (thread waiting in {sc})"),
            (None, Some(true)) => " (thread on CPU)".to_string(),
            _ => String::new(),
        };
        let _ = writeln!(out, "  state      {state}{how}");
        if l.state.gc_collecting == Some(true) {
            let _ = writeln!(out, "  gc         {}", gc_line(l.state.gc_generation));
        }
        if let Some(cb) = &l.callback {
            let task = cb.task.as_ref().map(|t| format!(" in task \"{}\"", e(&t.name))).unwrap_or_default();
            let _ = writeln!(out, "  callback   {}{task}", e(&cb.qualname));
        }
        let _ = writeln!(out, "  ready      {} callback{} waiting", l.ready, if l.ready == 1 { "" } else { "s" });
        let earliest = match &l.timers.earliest {
            Some(t) if t.due_in_ms < 0.0 => format!("; earliest overdue by {} (loop lag)", ms(-t.due_in_ms)),
            Some(t) => format!("; earliest due in {}", ms(t.due_in_ms)),
            None if !l.timers.complete => "; earliest unknown (the timers changed while read: loop lag unknown)".to_string(),
            None if l.timers.count > 0 => "; all cancelled".to_string(),
            None => String::new(),
        };
        let _ = writeln!(out, "  timers     {} scheduled{earliest}", l.timers.count);
        if let Some(fds) = l.fds {
            let sel = l.selector.as_deref().map(|s| format!(" ({})", e(s))).unwrap_or_default();
            let _ = writeln!(out, "  fds        {fds} registered{sel}");
        }
        if !l.stack.is_empty() {
            let _ = writeln!(out, "  stack (innermost first):");
            for f in &l.stack {
                let _ = writeln!(out, "    {}", frame_text(f));
            }
        }
        if let Some(x) = &l.executor {
            render_executor(&mut out, x);
        }
        crate::output::report::diagnosis_lines(&mut out, &l.diagnoses, "  ");
        if let Some(t) = &l.tasks {
            render_tasks(&mut out, t, tree);
            render_task_groups(&mut out, &t.groups, "  ");
        }
    }
    render_other_threads(&mut out, rep);
    out
}

/// Threads shown in the text at most (the JSON lists them all).
const OTHER_THREADS_SHOWN: usize = 20;

/// The threads that run no loop (executor workers, ...), named, with their innermost frame.
fn render_other_threads(out: &mut String, rep: &ProcessReport) {
    let loop_threads: Vec<(Option<i32>, Option<&str>)> = rep.loops.iter().map(|l| (l.thread.native_id, l.thread.name.as_deref())).collect();
    let others: Vec<&ThreadBrief> = rep.threads.iter().filter(|t| !loop_threads.contains(&(t.native_id, t.name.as_deref()))).collect();
    if others.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nOther threads ({}):", others.len());
    for t in others.iter().take(OTHER_THREADS_SHOWN) {
        let id = t.native_id.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        let name = t.name.as_deref().map(|n| format!(" \"{}\"", e(n))).unwrap_or_default();
        let top = t.top_frame.as_deref().map(|f| format!(": {}", e(f))).unwrap_or_default();
        let _ = writeln!(out, "  {id}{}{name}{top}", host_tid_note(t.native_id, t.host_tid));
    }
    if others.len() > OTHER_THREADS_SHOWN {
        let _ = writeln!(out, "  ... {} more (--json lists them all)", others.len() - OTHER_THREADS_SHOWN);
    }
}

/// ` (host tid N)` when the thread's id in loopspy's PID namespace differs from the target's own.
fn host_tid_note(native_id: Option<i32>, host_tid: Option<i32>) -> String {
    match (native_id, host_tid) {
        (Some(n), Some(h)) if n != h => format!(" (host tid {h})"),
        _ => String::new(),
    }
}

/// What `dump` says of a collection running at the moment of the look.
pub fn gc_line(generation: Option<u8>) -> String {
    match generation {
        Some(g) => format!("collecting now (generation {g}): the loop waits for the garbage collector"),
        None => "collecting now: the loop waits for the garbage collector".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names and frames from the target reach the terminal escaped.
    #[test]
    fn executor_lines_escape_what_the_target_named() {
        let frame = FrameReport { function: "render\u{1b}[2J".into(), file: "/a\u{7}.py".into(), line: 3 };
        let x = ExecutorReport {
            class: "Pool\u{1b}]0;x\u{7}".into(),
            address: "0x1".into(),
            max_workers: 2,
            workers: 2,
            busy: 1,
            queued: 5,
            shutdown: false,
            saturated: false,
            threads: vec![
                WorkerReport {
                    name: Some("asyncio_0\u{1b}[31m".into()),
                    native_id: Some(7),
                    state: WorkerState::Busy,
                    work: Some(frame.clone()),
                    at: Some(frame),
                },
                WorkerReport { name: None, native_id: None, state: WorkerState::Unknown, work: None, at: None },
            ],
        };
        let mut out = String::new();
        render_executor(&mut out, &x);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("1/2 workers busy (max_workers 2), 5 work items queued"), "{out}");
        assert_eq!(out.lines().count(), 3, "{out}");
    }
}
