//! One look at every event loop of an attached process: for each Python thread, its running
//! loop (if any), the loop's figures, state, current callback and Python stack.
//!
//! This is the glue between the target (py-spy + object reader), `/proc`, the loop readers
//! and the state classifier. `dump` prints one of these; the sampler will take many.

use std::collections::HashMap;

use py_spy::config::LockingStrategy;

use crate::callback::{self, CallbackKind};
use crate::error::{Failure, ThreadBrief};
use crate::eventloop::{self, LoopFigures, LoopKind, LoopReaders};
use crate::frames::{self, StackFrame, StackReader};
use crate::interp::{self, PyThread};
use crate::loopstate::{self, FrameName, LoopState};
use crate::memory::Memory;
use crate::procfs::{self, Syscall};
use crate::reader::{self, ObjectReader};
use crate::target::Target;
use crate::tasks::{self, TaskCounts, TaskDetail, TaskSet, TaskState, TreeNode};

/// How many times a torn read of a changing target is retried before giving up.
pub const READ_ATTEMPTS: usize = 5;

/// What a loop's thread is running, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackView {
    pub kind: CallbackKind,
    pub qualname: String,
    pub task: Option<TaskView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub name: String,
    pub coro: String,
}

/// One event loop, as seen at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopView {
    pub thread: PyThread,
    pub thread_name: Option<String>,
    pub addr: u64,
    pub kind: LoopKind,
    pub class_name: String,
    pub figures: LoopFigures,
    pub state: LoopState,
    pub syscall: Option<Syscall>,
    /// Our `CLOCK_MONOTONIC` when the figures were read, in the target's clock (time
    /// namespace offset applied): comparable with `loop.time()`.
    pub read_at: f64,
    /// How long the loop has been busy in the current iteration, when the loop records when
    /// the iteration started (uvloop).
    pub busy_for: Option<f64>,
    pub callback: Option<CallbackView>,
    pub stack: Vec<StackFrame>,
    /// The loop's tasks, when asked for.
    pub tasks: Option<LoopTasks>,
}

/// A loop's tasks: counts of all, details of the first ones.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopTasks {
    pub counts: TaskCounts,
    /// The registry held more tasks than loopspy walks.
    pub registry_truncated: bool,
    /// Running first, then pending, then finished; at most the number asked for.
    pub details: Vec<TaskDetail>,
    /// Tasks not described because of that limit (or because their reads were torn).
    pub not_shown: usize,
    pub tree: Vec<TreeNode>,
    pub cycles: Vec<Vec<u64>>,
}

/// What a look reads besides the loops themselves.
#[derive(Debug, Clone, Copy)]
pub struct LookOptions {
    /// Read the tasks, describing at most this many per loop (None: no tasks).
    pub tasks: Option<usize>,
}

impl Default for LookOptions {
    fn default() -> Self {
        LookOptions { tasks: Some(DEFAULT_MAX_TASKS) }
    }
}

/// Tasks described per loop by default (all are counted).
pub const DEFAULT_MAX_TASKS: usize = 1000;

impl LoopView {
    /// Seconds the earliest live timer is overdue (positive) or still due in (negative).
    pub fn timer_lateness(&self) -> Option<f64> {
        self.figures.earliest_timer.map(|when| self.read_at - when)
    }
}

/// Everything one look found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessView {
    pub threads: Vec<ThreadBrief>,
    pub loops: Vec<LoopView>,
}

/// Caches that make repeated looks cheaper (slot offsets, code names).
#[derive(Debug, Default)]
pub struct Looker {
    pid: i32,
    options: LookOptions,
    loops: LoopReaders,
    names: StackReader,
}

impl Looker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_options(options: LookOptions) -> Self {
        Looker { options, ..Self::default() }
    }

    /// Look at every loop. Torn reads are retried; a target that dies is reported as such.
    pub fn look(&mut self, target: &mut Target) -> Result<ProcessView, Failure> {
        let mut last = None;
        for _ in 0..READ_ATTEMPTS {
            match self.look_once(target) {
                Ok(view) => return Ok(view),
                Err(LookError::Failure(f)) => return Err(f),
                // An unknown loop class may be a stale pointer read mid-change: look again;
                // if it stays, it is the answer.
                Err(LookError::Unsupported(f)) => {
                    last = Some(f);
                    target.reader.clear_caches();
                }
                Err(LookError::Read(e)) => {
                    let failure = target.explain(&e);
                    if !matches!(failure, Failure::Unreadable { .. }) {
                        return Err(failure);
                    }
                    last = Some(failure);
                    target.reader.clear_caches();
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn look_once(&mut self, target: &mut Target) -> Result<ProcessView, LookError> {
        let pid = target.pid;
        self.pid = pid;
        let tids = procfs::tids(pid).map_err(|_| LookError::Failure(Failure::TargetExited { pid }))?;
        // The kernel's view of each thread first: a ptrace stop (--blocking) would hide it.
        let syscalls: HashMap<i32, Syscall> =
            tids.iter().filter_map(|t| Some((*t, procfs::thread_syscall(pid, *t).ok()?))).collect();

        let _lock = if target.options.blocking {
            let lock = target.spy.process.lock().map_err(|e| {
                LookError::Failure(if procfs::is_dead(pid) {
                    Failure::TargetExited { pid }
                } else {
                    Failure::PermissionDenied { pid, detail: format!("could not pause the target: {e}") }
                })
            })?;
            target.spy.config.blocking = LockingStrategy::AlreadyLocked;
            Some(lock)
        } else {
            None
        };
        let traces = crate::target::contained(|| target.spy.get_stack_traces());
        if target.options.blocking {
            target.spy.config.blocking = LockingStrategy::Lock;
        }
        let traces = traces.map_err(|e| {
            if procfs::is_dead(pid) {
                LookError::Failure(Failure::TargetExited { pid })
            } else {
                LookError::Read(reader::Error::invalid(0, format!("py-spy: {e:#}")))
            }
        })?;
        let stacks: HashMap<u64, Vec<StackFrame>> = traces
            .into_iter()
            .map(|t| {
                let frames = t
                    .frames
                    .into_iter()
                    .map(|f| StackFrame { function: f.name.into(), file: f.filename.into(), line: f.line })
                    .collect();
                (t.thread_id, frames)
            })
            .collect();

        let r = &target.reader;
        let threads = interp::threads(r, target.interp, &tids)?;
        let names: HashMap<u64, String> = interp::thread_names(r, target.interp).unwrap_or_default().into_iter().collect();

        let clock_offset = procfs::monotonic_offset(pid);
        let mut briefs = Vec::new();
        let mut loops = Vec::new();
        let task_set = match self.options.tasks {
            Some(_) => Some(tasks::enumerate(r, target.interp, &threads)?),
            None => None,
        };
        for thread in threads {
            let name = names.get(&thread.ident).cloned();
            let stack = stacks.get(&thread.ident).cloned().unwrap_or_default();
            briefs.push(ThreadBrief {
                native_id: thread.native_id,
                name: name.clone(),
                top_frame: stack.first().map(|f| format!("{} ({}:{})", f.function, f.file, f.line)),
            });
            let Some(addr) = thread.running_loop else { continue };
            let syscall = thread.native_id.and_then(|t| syscalls.get(&t).copied());
            let mut view = self.look_at_loop(r, target.interp, thread, name, addr, syscall, stack, clock_offset)?;
            if let (Some(set), Some(max)) = (&task_set, self.options.tasks) {
                view.tasks = Some(self.loop_tasks(r, target.interp, &view, set, max)?);
            }
            loops.push(view);
        }
        Ok(ProcessView { threads: briefs, loops })
    }

    #[allow(clippy::too_many_arguments)]
    fn look_at_loop<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        interp: u64,
        thread: PyThread,
        thread_name: Option<String>,
        addr: u64,
        syscall: Option<Syscall>,
        stack: Vec<StackFrame>,
        clock_offset: f64,
    ) -> Result<LoopView, LookError> {
        let (kind, class_name) = eventloop::kind_of(r, addr)?;
        let Some(kind) = kind else {
            return Err(LookError::Unsupported(Failure::UnsupportedLoop { pid: self.pid, class: class_name }));
        };
        let figures = self.loops.figures(r, kind, addr)?;
        let read_at = procfs::monotonic_now() + clock_offset;
        let names: Vec<FrameName> = stack.iter().map(|f| FrameName { function: &f.function, file: &f.file }).collect();
        let state = loopstate::classify(kind, &names, syscall, figures.selector.as_deref());
        let busy = matches!(state, LoopState::Callback | LoopState::Loop);
        let busy_for = figures.loop_time.filter(|_| busy).map(|t| (read_at - t).max(0.0));
        let callback = if state == LoopState::Callback { self.callback(r, interp, &thread, addr, kind)? } else { None };
        Ok(LoopView { thread, thread_name, addr, kind, class_name, figures, state, syscall, read_at, busy_for, callback, stack, tasks: None })
    }

    fn loop_tasks<M: Memory>(&mut self, r: &ObjectReader<M>, interp: u64, view: &LoopView, set: &TaskSet, max: usize) -> Result<LoopTasks, LookError> {
        let running = interp::current_task(r, interp, &view.thread, view.addr).unwrap_or(None);
        let mut mine: Vec<(u64, TaskState)> = set.of_loop(view.addr).map(|(t, _, s)| (*t, *s)).collect();
        // Running first, then pending, then the rest; stable otherwise.
        mine.sort_by_key(|(t, s)| (Some(*t) != running, *s));
        let mut details = Vec::new();
        let mut not_shown = mine.len().saturating_sub(max);
        for (t, s) in mine.iter().take(max) {
            match tasks::describe(r, &mut self.names, *t, *s, Some(*t) == running) {
                Ok(d) => details.push(d),
                // A task finishing while we read it: count it, do not fail the look.
                Err(reader::Error::Invalid { .. }) => not_shown += 1,
                Err(e) => return Err(LookError::Read(e)),
            }
        }
        let edges = tasks::await_edges(&details);
        let ids: Vec<u64> = details.iter().map(|d| d.addr).collect();
        let (tree, cycles) = tasks::await_tree(&ids, &edges);
        Ok(LoopTasks { counts: set.counts(view.addr), registry_truncated: set.truncated, details, not_shown, tree, cycles })
    }

    fn callback<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        interp: u64,
        thread: &PyThread,
        event_loop: u64,
        kind: LoopKind,
    ) -> Result<Option<CallbackView>, LookError> {
        let frames = frames::walk(r, thread.tstate)?;
        let described = match kind {
            LoopKind::Selector => match callback::running_handle(r, &mut self.names, &frames)? {
                Some(handle) => Some(callback::describe_handle(r, handle)?),
                None => None,
            },
            // uvloop runs handles from C: no Handle._run frame. The function it called is the
            // innermost frame entered from C (not the outermost, which is the program's own
            // entry); versions without entry marks leave it unknown unless a task runs.
            LoopKind::Uvloop => match frames.iter().rev().skip(1).rev().find(|f| f.entered_from_c == Some(true)) {
                Some(f) => Some(callback::Callback {
                    kind: CallbackKind::Function,
                    qualname: self.names.code_info(r, f.code)?.qualname.clone(),
                    task: None,
                }),
                None => None,
            },
        };
        // The loop's current task confirms (and, where no handle is visible, supplies) the task.
        let current = interp::current_task(r, interp, thread, event_loop).unwrap_or(None);
        let (kind, qualname, task) = match described {
            // Under uvloop a running task means the callback is its step.
            _ if kind == LoopKind::Uvloop && current.is_some() => {
                let task = current.expect("checked");
                (CallbackKind::TaskStep, callback::task_coro_qualname(r, task)?, Some(task))
            }
            Some(cb) => (cb.kind, cb.qualname, cb.task.or(if cb.kind == CallbackKind::TaskStep { current } else { None })),
            None => match current {
                Some(task) => (CallbackKind::TaskStep, callback::task_coro_qualname(r, task)?, Some(task)),
                None => return Ok(None),
            },
        };
        let task = match task {
            Some(t) => Some(TaskView { name: callback::task_name(r, t)?, coro: callback::task_coro_qualname(r, t)? }),
            None => None,
        };
        Ok(Some(CallbackView { kind, qualname, task }))
    }
}

enum LookError {
    Read(reader::Error),
    Failure(Failure),
    Unsupported(Failure),
}

impl From<reader::Error> for LookError {
    fn from(e: reader::Error) -> Self {
        LookError::Read(e)
    }
}
