//! One look at every event loop of an attached process: for each Python thread, its running
//! loop (if any), the loop's figures, state, current callback and Python stack.
//!
//! Each loop is looked at by the same [`LoopProbe`] the sampler uses (same stack walk, same
//! rules for what is a complete read); a look adds what a sample does not need: the
//! selector's descriptors, the callback by name, the tasks.

use std::collections::HashMap;

use crate::asyncio::callback::{self, CallbackKind};
use crate::asyncio::eventloop::{LoopFigures, LoopKind, LoopReaders};
use crate::asyncio::executor::{ExecutorReader, ExecutorView};
use crate::asyncio::loopstate::LoopState;
use crate::asyncio::tasks::{self, Edge, TaskCounts, TaskDetail, TaskSet, TaskState, TreeNode};
use crate::base::error::{Failure, ThreadBrief};
use crate::capture::probe::{Kernel, LookFailure, LoopProbe, LoopSample};
use crate::process::memory::Memory;
use crate::process::procfs::{self, Syscall};
use crate::python::frames::{FrameRef, StackFrame, StackReader};
use crate::python::interp::{self, CurrentTaskSource, PyThread};
use crate::python::reader::{self, ObjectReader};
use crate::python::target::Target;

/// How many times a look at the whole process is tried before giving up.
pub const READ_ATTEMPTS: usize = 5;
/// How many times one loop is looked at, within one look at the process.
const LOOK_ATTEMPTS: usize = 20;

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
    /// The thread's frames of the same look, innermost first, uncut.
    pub frame_refs: Vec<FrameRef>,
    /// How many of the stack's outermost frames are the loop's own.
    pub loop_frames: usize,
    /// The loop's tasks, when asked for.
    pub tasks: Option<LoopTasks>,
    /// The loop's default executor, when it has one (a `ThreadPoolExecutor`) and it could be
    /// read.
    pub executor: Option<ExecutorView>,
    /// Was the interpreter collecting garbage (read with the figures).
    pub gc: crate::python::gc::GcAt,
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
    /// Who awaits whom among `details`, with where each edge was found.
    pub edges: Vec<Edge>,
    pub tree: Vec<TreeNode>,
    pub cycles: Vec<Vec<u64>>,
    /// The pending tasks grouped by coroutine and what they wait on (a sample of at most
    /// `task_groups::MAX_EXAMINED`, scaled up).
    pub groups: crate::capture::task_groups::TaskGroupSample,
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
    /// Seconds the most overdue live timer (in the heap or waiting in the ready queue) is
    /// late (positive) or still due in (negative).
    pub fn timer_lateness(&self) -> Option<f64> {
        self.figures.most_overdue().map(|when| self.read_at - when)
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
    executors: ExecutorReader,
}

impl Looker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_options(options: LookOptions) -> Self {
        Looker { options, ..Self::default() }
    }

    /// Look at every loop. Failed looks are retried; a target that dies is reported as such.
    pub fn look(&mut self, target: &mut Target) -> Result<ProcessView, Failure> {
        let mut last = None;
        for _ in 0..READ_ATTEMPTS {
            match self.look_once(target) {
                // With a loop running, the interpreter's asyncio offsets may be found now
                // (`_asyncio` loaded after attach): if they change the layout, look again.
                Ok(view) if !view.loops.is_empty() && target.resolve_asyncio_late() => match self.look_once(target) {
                    Ok(view) => return Ok(view),
                    Err(LookError::Failure(f)) => return Err(f),
                    Err(_) => target.reader.clear_caches(),
                },
                Ok(view) => return Ok(view),
                Err(LookError::Failure(f)) => return Err(f),
                // An unknown loop class may be a stale pointer read mid-change: look again;
                // if it stays, it is the answer.
                Err(LookError::Unsupported(f)) => {
                    last = Some(f);
                    target.reader.clear_caches();
                    // A loop being set up or torn down settles within milliseconds.
                    std::thread::sleep(std::time::Duration::from_millis(10));
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
        let tids = procfs::task_ids(pid).map_err(|_| LookError::Failure(Failure::TargetExited { pid }))?;
        // The kernel's view is read by each probe before its memory reads; with --blocking
        // the target is paused for the reads, and a ptrace stop hides it: read it first.
        let kernels: HashMap<i32, Kernel> = if target.options.blocking {
            tids.iter()
                .map(|t| {
                    let (mut syscall, sched) = (procfs::thread_syscall(pid, t.tid).ok(), procfs::thread_state(pid, t.tid).ok());
                    if procfs::worth_rereading(syscall, sched) {
                        syscall = procfs::thread_syscall(pid, t.tid).ok().or(syscall);
                    }
                    let k = Kernel { syscall, sched };
                    (t.tid, k)
                })
                .collect()
        } else {
            HashMap::new()
        };
        let _lock = if target.options.blocking {
            Some(target.process.lock().map_err(|e| {
                LookError::Failure(if procfs::is_dead(pid) {
                    Failure::TargetExited { pid }
                } else {
                    Failure::PermissionDenied { pid, detail: format!("could not pause the target: {e}"), access: Some(procfs::access(pid)) }
                })
            })?)
        } else {
            None
        };
        let r = &target.reader;
        let threads = interp::threads(r, target.interp, &tids)?;
        let names: HashMap<u64, String> = interp::thread_names(r, target.interp).unwrap_or_default().into_iter().collect();
        let tasks_source = CurrentTaskSource::resolve(r, target.interp)?;

        let clock_offset = procfs::monotonic_offset(pid);
        let mut briefs = Vec::new();
        let mut loops = Vec::new();
        let mut unsupported = None;
        let task_set = match self.options.tasks {
            Some(_) => Some(tasks::enumerate(r, target.interp, &threads)?),
            None => None,
        };
        let all_threads = threads.clone();
        for thread in threads {
            let name = names.get(&thread.ident).cloned();
            let Some(addr) = thread.running_loop else {
                // A thread without a loop: its innermost frame, when its stack reads whole.
                let top = self.names.stack(r, thread.tstate).ok().and_then(|s| s.first().cloned());
                briefs.push(ThreadBrief {
                    native_id: thread.native_id,
                    host_tid: thread.host_tid,
                    name,
                    top_frame: top.map(|f| label(&f)),
                });
                continue;
            };
            let probe = match LoopProbe::new(pid, r, &mut self.loops, thread.clone(), addr)? {
                Ok(p) => p,
                // Not a loop loopspy reads (a Qt loop), or a pointer read while that thread's
                // loop was being set or cleared: the thread is listed without a loop, and the
                // process fails as unsupported only when no loop could be read.
                Err(class) => {
                    unsupported.get_or_insert(class);
                    briefs.push(ThreadBrief { native_id: thread.native_id, host_tid: thread.host_tid, name, top_frame: None });
                    continue;
                }
            };
            let kernel = thread.host_tid.and_then(|t| kernels.get(&t).copied());
            let mut view = self.look_at_loop(r, probe, kernel, name.clone(), &tasks_source, clock_offset)?;
            briefs.push(ThreadBrief {
                native_id: thread.native_id,
                host_tid: thread.host_tid,
                name,
                top_frame: view.stack.first().map(label),
            });
            if let (Some(set), Some(max)) = (&task_set, self.options.tasks) {
                view.tasks = Some(self.loop_tasks(r, target.interp, &view, set, max)?);
            }
            view.executor = self.executor(r, &view, &all_threads);
            loops.push(view);
        }
        if let (true, Some(class)) = (loops.is_empty(), unsupported) {
            return Err(LookError::Unsupported(Failure::UnsupportedLoop { pid, class }));
        }
        Ok(ProcessView { threads: briefs, loops })
    }

    fn look_at_loop<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        mut probe: LoopProbe,
        kernel: Option<Kernel>,
        thread_name: Option<String>,
        tasks_source: &CurrentTaskSource,
        clock_offset: f64,
    ) -> Result<LoopView, LookError> {
        let mut attempt = 0;
        let sample = loop {
            // Without --blocking the kernel's view is read at each attempt; with it, before
            // the pause (see `look_once`).
            let kernel = kernel.unwrap_or_else(|| probe.kernel());
            attempt += 1;
            match probe.look(r, &mut self.loops, &mut self.names, tasks_source, clock_offset, kernel) {
                Ok(s) => break s,
                Err(LookFailure::Exited) => return Err(LookError::Failure(Failure::TargetExited { pid: self.pid })),
                Err(LookFailure::LoopGone) => {
                    return Err(LookError::Read(reader::Error::invalid(probe.addr, "the loop stopped while it was read")))
                }
                Err(LookFailure::Failed(reason, detail)) if attempt >= LOOK_ATTEMPTS => {
                    return Err(LookError::Read(reader::Error::invalid(probe.addr, format!("{}: {detail}", reason.describe()))))
                }
                Err(LookFailure::Failed(..)) => continue,
            }
        };
        let mut figures = sample.figures.clone();
        self.loops.describe(r, &probe.objects, &mut figures)?;
        let callback = if sample.state == LoopState::Callback { self.callback(r, &probe, &sample)? } else { None };
        Ok(LoopView {
            thread: probe.thread.clone(),
            thread_name,
            addr: probe.addr,
            kind: probe.kind,
            class_name: probe.class_name.clone(),
            figures,
            state: sample.state,
            syscall: sample.syscall,
            read_at: sample.t,
            busy_for: sample.busy_for,
            callback,
            stack: sample.frames,
            frame_refs: probe.frame_refs().to_vec(),
            loop_frames: sample.loop_frames,
            tasks: None,
            executor: None,
            gc: sample.gc,
        })
    }

    /// The loop's default executor: a read that fails (the pool changing under us) is tried
    /// again, then left out of the look (the rest of the look stands).
    fn executor<M: Memory>(&mut self, r: &ObjectReader<M>, view: &LoopView, threads: &[PyThread]) -> Option<ExecutorView> {
        for _ in 0..LOOK_ATTEMPTS.min(5) {
            let read = match self.executors.default_executor(r, view.kind, view.addr) {
                Ok(Some(e)) => self.executors.read(r, e, threads, &mut self.names).map(Some),
                other => other.map(|_| None),
            };
            match read {
                Ok(v) => return v,
                Err(e) if e.is_gone() => return None,
                Err(_) => continue,
            }
        }
        None
    }

    fn loop_tasks<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        interp: u64,
        view: &LoopView,
        set: &TaskSet,
        max: usize,
    ) -> Result<LoopTasks, LookError> {
        let running = interp::current_task(r, interp, &view.thread, view.addr).unwrap_or(None);
        let mut mine: Vec<(u64, TaskState)> = set.of_loop(view.addr).map(|(t, _, s)| (*t, *s)).collect();
        // Running first, then pending, then the rest; stable otherwise.
        mine.sort_by_key(|(t, s)| (Some(*t) != running, *s));
        let mut details = Vec::new();
        let mut not_shown = mine.len().saturating_sub(max);
        for (t, s) in mine.iter().take(max) {
            match tasks::describe(r, &mut self.names, *t, *s, Some(*t) == running, &view.frame_refs) {
                Ok(d) => details.push(d),
                // A task finishing while we read it: count it, do not fail the look.
                Err(reader::Error::Invalid { .. }) => not_shown += 1,
                Err(e) => return Err(LookError::Read(e)),
            }
        }
        let edges = tasks::await_edges(&details);
        let ids: Vec<u64> = details.iter().map(|d| d.addr).collect();
        let pairs: Vec<(u64, u64)> = edges.iter().map(|e| (e.awaiter, e.awaited)).collect();
        let (tree, cycles) = tasks::await_tree(&ids, &pairs);
        let (sample, pending) = crate::capture::task_groups::pick(set, view.addr, running, 0);
        let groups = crate::capture::task_groups::group(r, &mut self.names, &sample, pending, view.read_at, 0, 1.0);
        Ok(LoopTasks { counts: set.counts(view.addr), registry_truncated: set.truncated, details, not_shown, edges, tree, cycles, groups })
    }

    /// What the busy loop runs: the `Handle`'s callback (stock loops) or the function uvloop
    /// called; the task when it is a task step.
    fn callback<M: Memory>(&mut self, r: &ObjectReader<M>, probe: &LoopProbe, s: &LoopSample) -> Result<Option<CallbackView>, LookError> {
        let described = match (s.handle, s.callback_frame) {
            (Some(handle), _) => Some(callback::describe_handle(r, handle)?),
            (None, Some(f)) => Some(callback::Callback {
                kind: CallbackKind::Function,
                qualname: self.names.code_info(r, f.code)?.qualname.clone(),
                task: None,
            }),
            (None, None) => None,
        };
        let current = s.task.map(|t| t.addr);
        let (kind, qualname, task) = match described {
            // Under uvloop a running task means the callback is its step.
            _ if probe.kind == LoopKind::Uvloop && current.is_some() => {
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

fn label(f: &StackFrame) -> String {
    format!("{} ({}:{})", f.function, f.file, f.line)
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
