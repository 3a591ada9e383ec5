//! What a recording holds: every sample taken, with stacks and names interned so that ten
//! minutes at 1000 Hz stay a few tens of megabytes. Plain data: the sampler fills it, the
//! metrics, the flame graph, the JSON report and the dashboard read it.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

use crate::asyncio::eventloop::LoopKind;
use crate::asyncio::loopstate::LoopState;
use crate::capture::probe::FailReason;
use crate::process::procfs::{syscall_name, Syscall};
use crate::python::frames::StackFrame;

/// Values stored once and referred to by index.
#[derive(Debug, Clone)]
pub struct Interner<T: Eq + Hash + Clone> {
    items: Vec<T>,
    index: HashMap<T, u32>,
}

impl<T: Eq + Hash + Clone> Default for Interner<T> {
    fn default() -> Self {
        Interner { items: Vec::new(), index: HashMap::new() }
    }
}

impl<T: Eq + Hash + Clone> Interner<T> {
    pub fn intern(&mut self, value: T) -> u32 {
        if let Some(id) = self.index.get(&value) {
            return *id;
        }
        let id = self.items.len() as u32;
        self.items.push(value.clone());
        self.index.insert(value, id);
        id
    }

    pub fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What the loop thread was doing in the kernel at a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadActivity {
    /// On a CPU, running (in user space).
    OnCpu,
    /// Blocked in a system call (number).
    Waiting(i64),
    /// Blocked outside a system call (page fault, ptrace stop...).
    Blocked,
    /// The kernel's view could not be read.
    Unknown,
}

impl ThreadActivity {
    pub fn from_syscall(s: Option<Syscall>) -> Self {
        match s {
            Some(Syscall::Running) => ThreadActivity::OnCpu,
            Some(Syscall::In(nr)) => ThreadActivity::Waiting(nr),
            Some(Syscall::Blocked) => ThreadActivity::Blocked,
            None => ThreadActivity::Unknown,
        }
    }

    /// `on CPU`, `clock_nanosleep`, `syscall 999`, ...
    pub fn describe(self) -> String {
        match self {
            ThreadActivity::OnCpu => "on CPU".into(),
            ThreadActivity::Waiting(nr) => syscall_name(nr).map(str::to_string).unwrap_or_else(|| format!("syscall {nr}")),
            ThreadActivity::Blocked => "blocked (not in a syscall)".into(),
            ThreadActivity::Unknown => "unknown".into(),
        }
    }
}

/// One sample of one loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// `CLOCK_MONOTONIC` seconds, in the target's clock (comparable with `loop.time()`).
    pub t: f64,
    pub loop_index: u16,
    pub state: LoopState,
    pub activity: ThreadActivity,
    pub ready: u32,
    /// Earliest live timer's lateness in seconds: positive when overdue, negative when still
    /// ahead; `None` when no live timer exists; [`Sample::LAG_UNKNOWN`] when the timers
    /// could not be read (read it through [`Sample::lag_ms`]).
    pub lateness: Option<f32>,
    /// Interned stack of the loop thread, innermost first.
    pub stack: u32,
    /// How many of the stack's outermost frames are the loop's own (its dispatch and what
    /// runs it); the frames above them are the callback's.
    pub loop_frames: u16,
    /// Identity of the callback running (the `Handle` object, or the task for a task step);
    /// `None` when idle or unknown. Consecutive busy samples with the same identity belong to
    /// one callback.
    pub callback: Option<u64>,
    /// Interned name of the task running, when known.
    pub task: Option<u32>,
    /// How long the current loop iteration has been running (uvloop keeps the time).
    pub busy_for: Option<f32>,
}

/// A look at a loop that was not a sample, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailedSample {
    pub t: f64,
    pub loop_index: u16,
    pub reason: FailReason,
}

impl Sample {
    /// Stored in `lateness` when the timers kept changing while they were read: the lag of
    /// that look is unknown (its state, stack and ready depth stand).
    pub const LAG_UNKNOWN: f32 = f32::INFINITY;

    /// The loop's lag at this sample in milliseconds: how late the most overdue timer is, 0
    /// when none is due (or none exists); `None` when unknown.
    pub fn lag_ms(&self) -> Option<f64> {
        match self.lateness {
            Some(l) if l == Self::LAG_UNKNOWN => None,
            Some(l) => Some((l as f64 * 1e3).max(0.0)),
            None => Some(0.0),
        }
    }
}

/// A stack of another thread (`--all-threads`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreadSample {
    pub t: f64,
    pub thread: u32,
    pub stack: u32,
}

/// The number of tasks of a loop at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskCountSample {
    pub t: f64,
    pub loop_index: u16,
    pub counts: crate::asyncio::tasks::TaskCounts,
    /// The registry held more tasks than loopspy walks.
    pub truncated: bool,
}

/// The loop a sample belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LoopMeta {
    pub native_id: Option<i32>,
    pub thread_name: Option<String>,
    pub loop_class: String,
    pub loop_kind: LoopKind,
    pub selector: Option<String>,
}

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `--duration` elapsed.
    Duration,
    /// Ctrl-C (SIGINT).
    Interrupted,
    /// The target process exited.
    TargetExited,
    /// Still running (a live view).
    Running,
    /// The terminal hung up (SIGHUP: an SSH connection dropped, a tmux session killed).
    HungUp,
    /// SIGTERM.
    Terminated,
    /// The target ran `exec()`: another program now runs under its PID.
    TargetExec,
    /// The capture file ends without an end record: loopspy was stopped while recording.
    Cut,
}

impl EndReason {
    /// Every reason, in the order capture files number them.
    pub const ALL: [EndReason; 8] = [
        EndReason::Duration,
        EndReason::Interrupted,
        EndReason::TargetExited,
        EndReason::Running,
        EndReason::HungUp,
        EndReason::Terminated,
        EndReason::TargetExec,
        EndReason::Cut,
    ];
}

/// Everything recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    pub rate_hz: f64,
    pub loops: Vec<LoopMeta>,
    pub frames: Interner<StackFrame>,
    pub stacks: Interner<Vec<u32>>,
    pub tasks: Interner<String>,
    pub threads: Interner<String>,
    pub samples: Vec<Sample>,
    pub other_threads: Vec<ThreadSample>,
    /// Task counts, about once a second.
    pub task_counts: Vec<TaskCountSample>,
    /// Looks at a loop that were not samples (after retries), with their reasons.
    pub failures: Vec<FailedSample>,
    /// Seconds the target was held stopped by `--blocking`.
    pub paused: f64,
    pub started: f64,
    pub ended: f64,
    pub end: EndReason,
}

impl Recording {
    pub fn new(rate_hz: f64, loops: Vec<LoopMeta>, started: f64) -> Self {
        Recording {
            rate_hz,
            loops,
            frames: Interner::default(),
            stacks: Interner::default(),
            tasks: Interner::default(),
            threads: Interner::default(),
            samples: Vec::new(),
            other_threads: Vec::new(),
            task_counts: Vec::new(),
            failures: Vec::new(),
            paused: 0.0,
            started,
            ended: started,
            end: EndReason::Running,
        }
    }

    /// Intern a stack (frames innermost first).
    pub fn intern_stack(&mut self, frames: &[StackFrame]) -> u32 {
        let ids: Vec<u32> = frames.iter().map(|f| self.frames.intern(f.clone())).collect();
        self.stacks.intern(ids)
    }

    /// The frames of an interned stack, innermost first.
    pub fn stack(&self, id: u32) -> impl Iterator<Item = &StackFrame> + '_ {
        self.stacks.get(id).iter().map(|f| self.frames.get(*f))
    }

    /// Failed looks, by reason (every reason listed, in order).
    pub fn failures_by_reason(&self) -> Vec<(FailReason, u64)> {
        FailReason::ALL.iter().map(|r| (*r, self.failures.iter().filter(|f| f.reason == *r).count() as u64)).collect()
    }

    /// Share of looks that failed, in percent (0 without looks).
    pub fn failed_pct(&self) -> f64 {
        let all = self.samples.len() + self.failures.len();
        if all == 0 {
            0.0
        } else {
            100.0 * self.failures.len() as f64 / all as f64
        }
    }

    pub fn duration(&self) -> f64 {
        (self.ended - self.started).max(0.0)
    }

    /// The nominal interval between samples.
    pub fn interval(&self) -> f64 {
        1.0 / self.rate_hz
    }
}
