//! `loopspy dump`: one look at a process, as a report (the JSON document) and as text.
//!
//! The report is plain data built from a [`ProcessView`]; its schema is documented in
//! `docs/json-schema.md` and its `schema_version` changes when a field changes meaning.

use std::fmt::Write as _;

use serde::Serialize;

use crate::asyncio::callback::CallbackKind;
use crate::asyncio::eventloop::LoopKind;
use crate::asyncio::loopstate::LoopState;
use crate::asyncio::tasks::{EdgeSource, TaskCounts, TaskState, TreeNode, Waiting};
use crate::base::error::{ProcessBrief, ThreadBrief};
use crate::capture::snapshot::{LoopTasks, LoopView, ProcessView};
use crate::process::procfs::{self, Syscall};
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
    }
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
        if let Some(t) = &l.tasks {
            render_tasks(&mut out, t, tree);
        }
    }
    out
}

/// ` (host tid N)` when the thread's id in loopspy's PID namespace differs from the target's own.
fn host_tid_note(native_id: Option<i32>, host_tid: Option<i32>) -> String {
    match (native_id, host_tid) {
        (Some(n), Some(h)) if n != h => format!(" (host tid {h})"),
        _ => String::new(),
    }
}
