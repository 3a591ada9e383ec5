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
use crate::python::gc::GcAt;

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

    /// The items interned from index `from` on, in order.
    pub fn items_since(&self, from: usize) -> &[T] {
        self.items.get(from..).unwrap_or(&[])
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Names (of tasks, of threads) stored once and referred to by id, forgetting those not
/// used for a while: a service that names every request's task differently (asyncio's own
/// `Task-1`, `Task-2`, ...) would otherwise grow a long recording by one name per request.
///
/// Ids are given in order and never reused. A name forgotten and seen again gets a new id
/// (and is written again to a capture file, whose reader takes every name as the next id with
/// [`NameTable::push`]); a forgotten id reads as [`FORGOTTEN`].
#[derive(Debug, Clone, Default)]
pub struct NameTable {
    next: u32,
    /// Id → (name, time of its last use).
    names: HashMap<u32, (std::sync::Arc<str>, f64)>,
    index: HashMap<std::sync::Arc<str>, u32>,
}

/// What a forgotten name reads as.
pub const FORGOTTEN: &str = "<forgotten>";

/// Task and thread names a recording holds at least before it forgets those not used
/// lately ([`NameTable::forget_unused_before`]).
pub const KEEP_NAMES: usize = 4096;

impl NameTable {
    /// The id of `name`, used at time `t` (a sample's time).
    pub fn intern_at(&mut self, name: String, t: f64) -> u32 {
        if let Some(&id) = self.index.get(name.as_str()) {
            if let Some(e) = self.names.get_mut(&id) {
                e.1 = e.1.max(t);
            }
            return id;
        }
        let id = self.push(name);
        if let Some(e) = self.names.get_mut(&id) {
            e.1 = t;
        }
        id
    }

    /// The id of `name` (as used now: it is not forgotten before the next
    /// [`NameTable::forget_unused_before`] with a later time).
    pub fn intern(&mut self, name: String) -> u32 {
        self.intern_at(name, f64::INFINITY)
    }

    /// `name` under the next id, even when it has one already (a capture file's or a
    /// delta's names, in the order their ids were given).
    pub fn push(&mut self, name: String) -> u32 {
        let id = self.next;
        self.next += 1;
        let rc: std::sync::Arc<str> = name.into();
        self.index.insert(rc.clone(), id);
        // Not used yet: the samples that refer to it say when ([`NameTable::touch`]).
        self.names.insert(id, (rc, f64::NEG_INFINITY));
        id
    }

    /// `id` was used at time `t`.
    pub fn touch(&mut self, id: u32, t: f64) {
        if let Some(e) = self.names.get_mut(&id) {
            e.1 = e.1.max(t);
        }
    }

    pub fn get(&self, id: u32) -> &str {
        self.names.get(&id).map(|e| &*e.0).unwrap_or(FORGOTTEN)
    }

    /// The names of ids `from..len()`, in order (a forgotten one as [`FORGOTTEN`]: forget
    /// only what every reader of them has taken).
    pub fn items_since(&self, from: usize) -> Vec<String> {
        (from as u32..self.next).map(|id| self.get(id).to_string()).collect()
    }

    /// Ids given so far (the next id).
    pub fn len(&self) -> usize {
        self.next as usize
    }

    pub fn is_empty(&self) -> bool {
        self.next == 0
    }

    /// Names held now (not forgotten).
    pub fn held(&self) -> usize {
        self.names.len()
    }

    /// Forget the names last used before `t`, once more than twice `keep` are held (so
    /// that the pass, which looks at every name held, comes at most once per `keep` new
    /// names).
    pub fn forget_unused_before(&mut self, t: f64, keep: usize) {
        if self.names.len() <= 2 * keep {
            return;
        }
        let index = &mut self.index;
        self.names.retain(|id, (name, used)| {
            let stays = *used >= t;
            if !stays && index.get(&**name) == Some(id) {
                index.remove(&**name);
            }
            stays
        });
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
    /// Was the interpreter collecting garbage at this sample (and which generation).
    pub gc: GcAt,
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

/// A loop's default executor at one moment (read beside the task count, about once a
/// second, when the loop has one).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorSample {
    pub t: f64,
    pub loop_index: u16,
    pub max_workers: u32,
    /// Workers started (`len(_threads)`).
    pub threads: u32,
    /// Workers seen running a work item.
    pub busy: u32,
    /// Work items waiting in the queue.
    pub queued: u64,
    pub shutdown: bool,
    /// While saturated, the first [`ExecutorSample::WORKERS`] workers (else none: a healthy
    /// pool's workers are not kept).
    pub workers: Vec<WorkerSample>,
}

impl ExecutorSample {
    /// Workers kept per sample (all are counted).
    pub const WORKERS: usize = 64;

    /// Every worker the pool may start is busy and work waits (a free worker takes queued
    /// work at once, so queued work with the pool at its limit means none is free).
    pub fn starved(&self) -> bool {
        self.queued > 0 && self.max_workers > 0 && self.threads >= self.max_workers && self.busy >= self.max_workers
    }
}

/// One worker of an [`ExecutorSample`]: its thread name (in `Recording::threads`), its state,
/// the function its work item runs and its innermost frame (in `Recording::frames`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerSample {
    pub name: Option<u32>,
    pub state: crate::asyncio::executor::WorkerState,
    pub work: Option<u32>,
    pub at: Option<u32>,
}

/// The loop a sample belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LoopMeta {
    pub native_id: Option<i32>,
    pub thread_name: Option<String>,
    pub loop_class: String,
    pub loop_kind: LoopKind,
    pub selector: Option<String>,
    /// When loopspy found the loop (target clock, as the samples): it lived from then at the
    /// latest, whenever its first look came (a look that stops 2,000 threads first may come
    /// seconds later). Absent in captures written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<f64>,
}

/// A process of a recording that follows a parent and its descendants (`--subprocesses`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ProcessMeta {
    pub pid: i32,
    /// Its parent when it joined (null when that could not be read).
    pub parent_pid: Option<i32>,
    /// Its command line as shown (shortened, secrets redacted, unless asked whole).
    pub command: Vec<String>,
    /// Its Python version, e.g. `3.12.1`.
    pub python: String,
    /// When its loops started being sampled (target clock, as the samples).
    pub joined: f64,
    /// When it left the recording (exited, or replaced its program), if it did.
    pub left: Option<f64>,
    pub end: Option<ProcessEnd>,
}

/// Why a process left a recording before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessEnd {
    /// It exited (or was killed); a worker its master starts again is a new process.
    Exited,
    /// It ran `exec()`: the program that now runs under its PID is another process.
    Exec,
}

impl ProcessEnd {
    /// Every reason, in the order capture files number them.
    pub const ALL: [ProcessEnd; 2] = [ProcessEnd::Exited, ProcessEnd::Exec];
}

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `--duration` elapsed.
    Duration,
    /// Ctrl-C (SIGINT).
    Interrupted,
    /// The target process exited.
    TargetExited,
    /// Still running (a live view).
    #[default]
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
    pub tasks: NameTable,
    pub threads: NameTable,
    pub samples: Vec<Sample>,
    pub other_threads: Vec<ThreadSample>,
    /// Task counts, about once a second.
    pub task_counts: Vec<TaskCountSample>,
    /// Each loop's default executor, read beside the task counts (when the loop has one).
    pub executors: Vec<ExecutorSample>,
    /// Pending tasks grouped by coroutine and what they wait on, every few seconds.
    pub task_groups: crate::capture::task_groups::TaskGroupLog,
    /// Looks at a loop that were not samples (after retries), with their reasons.
    pub failures: Vec<FailedSample>,
    /// Seconds the target was held stopped by `--blocking`.
    pub paused: f64,
    pub started: f64,
    pub ended: f64,
    pub end: EndReason,
    /// With `--subprocesses`: every process recorded, in the order they joined (empty for a
    /// recording of one process).
    pub processes: Vec<ProcessMeta>,
    /// With `--subprocesses`: the process (index in `processes`) of each loop, by loop index.
    pub loop_process: Vec<u16>,
    /// With `--subprocesses` and `--all-threads`: the process of each thread name in `threads`.
    pub thread_process: Vec<u16>,
    /// What a live view let go of to keep its memory bounded ([`Recording::forget_before`]).
    pub forgotten: Forgotten,
    /// [`Recording::loop_spans`] of the samples and failures held, as far as it has counted.
    spans_held: SpanCache,
}

/// Per-loop spans of the looks held, counted as far as `samples`/`failures` (a live view
/// asks at every redraw: it counts only what came since, and again from the start after the
/// held looks were let go of or changed).
#[derive(Debug, Default)]
struct SpanCache(std::sync::Mutex<SpanCount>);

#[derive(Debug, Default)]
struct SpanCount {
    samples: usize,
    failures: usize,
    /// The time of the last sample and failure counted, and `forgotten`'s counts then: a
    /// change in any says the held looks are no longer those counted.
    last_sample_t: f64,
    last_failure_t: f64,
    forgotten: (u64, u64),
    spans: Vec<LoopSpan>,
}

impl Clone for SpanCache {
    /// A copy counts afresh.
    fn clone(&self) -> Self {
        SpanCache::default()
    }
}

/// Samples and failed looks a recording no longer holds (a long `top` or `record` keeps
/// what it needs as it goes): they still count in its totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forgotten {
    pub samples: u64,
    pub failures: u64,
    pub other_threads: u64,
    /// Failed looks let go of, by reason (in [`FailReason::ALL`] order).
    pub by_reason: Vec<u64>,
    /// Per loop, the looks let go of.
    pub spans: Vec<LoopSpan>,
    /// The oldest time still held (0: nothing forgotten).
    pub since: f64,
}

/// One loop's looks: how many, how many failed, and the first and last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopSpan {
    pub looks: u64,
    pub failed: u64,
    pub first: f64,
    pub last: f64,
}

impl Default for LoopSpan {
    fn default() -> Self {
        LoopSpan { looks: 0, failed: 0, first: f64::MAX, last: f64::MIN }
    }
}

#[cfg(test)]
impl LoopMeta {
    /// A selector loop of class `L` on thread `native_id`, for tests.
    pub(crate) fn test(native_id: i32) -> LoopMeta {
        LoopMeta {
            native_id: Some(native_id),
            thread_name: None,
            loop_class: "L".into(),
            loop_kind: LoopKind::Selector,
            selector: None,
            found: None,
        }
    }
}

impl LoopSpan {
    fn add(&mut self, t: f64, failed: bool) {
        self.looks += 1;
        self.failed += failed as u64;
        self.first = self.first.min(t);
        self.last = self.last.max(t);
    }

    fn merge(&mut self, o: &LoopSpan) {
        self.looks += o.looks;
        self.failed += o.failed;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }

    /// From its first look to one period after its last, stretched to the recording's own
    /// start and end (`within`) when it was looked at within two periods of them: a loop that
    /// lived through the recording lived its whole duration. The period is the asked interval,
    /// or the mean spacing of the looks when the sampler fell behind it (each look of a
    /// `--blocking` recording of 2,000 threads takes 40 ms, not 10). A loop `found` before
    /// its first look lived from then (or from the recording's start, if found before it):
    /// the first look of a recording that stops 2,000 threads may come seconds after its
    /// start, too late to tell by the period.
    pub fn lived(&self, interval: f64, within: (f64, f64), found: Option<f64>) -> f64 {
        if self.looks == 0 {
            return 0.0;
        }
        let spread = (self.last - self.first).max(0.0);
        let spacing = if self.looks > 1 { spread / (self.looks - 1) as f64 } else { 0.0 };
        let period = interval.max(spacing);
        let (start, end) = within;
        let from = match found {
            _ if self.first - start <= 2.0 * period => start.min(self.first),
            Some(f) if f <= self.first => f.max(start),
            _ => self.first,
        };
        let to = if end - self.last <= 2.0 * period { end.max(self.last) } else { self.last + period };
        (to - from).max(period)
    }

    pub fn failed_pct(&self) -> f64 {
        if self.looks == 0 {
            0.0
        } else {
            100.0 * self.failed as f64 / self.looks as f64
        }
    }
}

impl Recording {
    pub fn new(rate_hz: f64, loops: Vec<LoopMeta>, started: f64) -> Self {
        Recording {
            rate_hz,
            loops,
            frames: Interner::default(),
            stacks: Interner::default(),
            tasks: NameTable::default(),
            threads: NameTable::default(),
            samples: Vec::new(),
            other_threads: Vec::new(),
            task_counts: Vec::new(),
            executors: Vec::new(),
            task_groups: Default::default(),
            failures: Vec::new(),
            paused: 0.0,
            started,
            ended: started,
            end: EndReason::Running,
            processes: Vec::new(),
            loop_process: Vec::new(),
            thread_process: Vec::new(),
            forgotten: Forgotten::default(),
            spans_held: SpanCache::default(),
        }
    }

    /// Does it follow several processes (`--subprocesses`)?
    pub fn is_fleet(&self) -> bool {
        !self.processes.is_empty()
    }

    /// The process (index in `processes`) a loop belongs to, in a recording of several.
    pub fn process_of_loop(&self, loop_index: u16) -> Option<u16> {
        self.loop_process.get(loop_index as usize).copied().filter(|p| (*p as usize) < self.processes.len())
    }

    /// The process (index in `processes`) of a thread named in `threads`, in a recording of several.
    pub fn process_of_thread(&self, thread: u32) -> Option<u16> {
        self.thread_process.get(thread as usize).copied().filter(|p| (*p as usize) < self.processes.len())
    }

    /// The loops of a process (indices in `loops`), in order.
    pub fn loops_of_process(&self, process: u16) -> Vec<u16> {
        (0..self.loops.len() as u16).filter(|l| self.process_of_loop(*l) == Some(process)).collect()
    }

    /// Let go of the samples, failed looks and other threads' samples older than `t`
    /// (interned names and task counts stay): a recording that runs for hours keeps what it
    /// needs as it goes, in bounded memory. Totals, per-loop looks and failure reasons keep
    /// counting what was let go of. `started` moves to `t` when `move_start`, so what is
    /// rendered from the samples held covers them (a live view); otherwise it stays (the
    /// recording's figures come from a stream that saw every sample).
    pub fn forget_before(&mut self, t: f64, move_start: bool) {
        let n = self.samples.partition_point(|s| s.t < t);
        let f = self.failures.partition_point(|s| s.t < t);
        let o = self.other_threads.partition_point(|s| s.t < t);
        if n == 0 && f == 0 && o == 0 {
            return;
        }
        if self.forgotten.spans.len() < self.loops.len() {
            self.forgotten.spans.resize(self.loops.len(), LoopSpan::default());
        }
        if self.forgotten.by_reason.len() < FailReason::ALL.len() {
            self.forgotten.by_reason.resize(FailReason::ALL.len(), 0);
        }
        for s in self.samples.drain(..n) {
            if let Some(span) = self.forgotten.spans.get_mut(s.loop_index as usize) {
                span.add(s.t, false);
            }
        }
        for x in self.failures.drain(..f) {
            if let Some(span) = self.forgotten.spans.get_mut(x.loop_index as usize) {
                span.add(x.t, true);
            }
            if let Some(i) = FailReason::ALL.iter().position(|r| *r == x.reason) {
                self.forgotten.by_reason[i] += 1;
            }
        }
        self.other_threads.drain(..o);
        // Names no sample held refers to (those the samples let go of used) are let go of too.
        self.tasks.forget_unused_before(t, KEEP_NAMES);
        self.threads.forget_unused_before(t, KEEP_NAMES);
        self.forgotten.samples += n as u64;
        self.forgotten.failures += f as u64;
        self.forgotten.other_threads += o as u64;
        self.forgotten.since = t;
        if move_start {
            self.started = self.started.max(t);
            self.task_counts.retain(|c| c.t >= t);
            self.executors.retain(|c| c.t >= t);
        }
    }

    /// Per loop, its looks: how many, how many failed, the first and the last.
    pub fn loop_spans(&self) -> Vec<LoopSpan> {
        let mut spans = vec![LoopSpan::default(); self.loops.len()];
        for (i, f) in self.forgotten.spans.iter().enumerate() {
            if let Some(s) = spans.get_mut(i) {
                s.merge(f);
            }
        }
        for (s, held) in spans.iter_mut().zip(self.held_spans()) {
            s.merge(&held);
        }
        spans
    }

    /// Per loop, the spans of the looks held (counting only those added since the last call
    /// while the held looks are otherwise the same).
    fn held_spans(&self) -> Vec<LoopSpan> {
        let mut c = self.spans_held.0.lock().unwrap_or_else(|e| e.into_inner());
        let forgotten = (self.forgotten.samples, self.forgotten.failures);
        let same = c.forgotten == forgotten
            && c.spans.len() == self.loops.len()
            && c.samples <= self.samples.len()
            && c.failures <= self.failures.len()
            && (c.samples == 0 || self.samples[c.samples - 1].t == c.last_sample_t)
            && (c.failures == 0 || self.failures[c.failures - 1].t == c.last_failure_t);
        if !same {
            *c = SpanCount { forgotten, spans: vec![LoopSpan::default(); self.loops.len()], ..SpanCount::default() };
        }
        let c = &mut *c;
        for s in &self.samples[c.samples..] {
            if let Some(span) = c.spans.get_mut(s.loop_index as usize) {
                span.add(s.t, false);
            }
        }
        for f in &self.failures[c.failures..] {
            if let Some(span) = c.spans.get_mut(f.loop_index as usize) {
                span.add(f.t, true);
            }
        }
        c.samples = self.samples.len();
        c.failures = self.failures.len();
        c.last_sample_t = self.samples.last().map_or(0.0, |s| s.t);
        c.last_failure_t = self.failures.last().map_or(0.0, |f| f.t);
        c.spans.clone()
    }

    /// Failed looks in all, the forgotten ones included.
    pub fn total_failures(&self) -> u64 {
        self.failures.len() as u64 + self.forgotten.failures
    }

    /// Samples taken in all, the forgotten ones included.
    pub fn total_samples(&self) -> u64 {
        self.samples.len() as u64 + self.forgotten.samples
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
        FailReason::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let forgotten = self.forgotten.by_reason.get(i).copied().unwrap_or(0);
                (*r, self.failures.iter().filter(|f| f.reason == *r).count() as u64 + forgotten)
            })
            .collect()
    }

    /// Share of looks that failed, in percent (0 without looks).
    pub fn failed_pct(&self) -> f64 {
        let failed = self.total_failures();
        let all = self.total_samples() + failed;
        if all == 0 {
            0.0
        } else {
            100.0 * failed as f64 / all as f64
        }
    }

    pub fn duration(&self) -> f64 {
        (self.ended - self.started).max(0.0)
    }

    /// How long the recording's loop `index` lived (its looks in `span`), as
    /// [`LoopSpan::lived`] counts it.
    pub fn lived(&self, index: usize, span: &LoopSpan) -> f64 {
        span.lived(self.interval(), (self.started, self.ended), self.loops.get(index).and_then(|m| m.found))
    }

    /// The nominal interval between samples.
    pub fn interval(&self) -> f64 {
        1.0 / self.rate_hz
    }

    /// What was added since `marks` (which then move on): the new loops and interned items,
    /// and the samples, failures and counts, moved out. The sampling side of a live view
    /// sends these to the side that shows them, keeping only its interners.
    pub fn take_delta(&mut self, marks: &mut Marks) -> RecordingDelta {
        let d = RecordingDelta {
            loops: self.loops.get(marks.loops..).unwrap_or(&[]).to_vec(),
            frames: self.frames.items_since(marks.frames).to_vec(),
            stacks: self.stacks.items_since(marks.stacks).to_vec(),
            tasks: self.tasks.items_since(marks.tasks),
            threads: self.threads.items_since(marks.threads),
            samples: std::mem::take(&mut self.samples),
            failures: std::mem::take(&mut self.failures),
            other_threads: std::mem::take(&mut self.other_threads),
            task_counts: std::mem::take(&mut self.task_counts),
            executors: std::mem::take(&mut self.executors),
            task_groups: self.task_groups.take(),
            paused: self.paused,
            ended: self.ended,
            end: self.end,
            // A handful of processes: sent whole, as a process that left changes.
            processes: self.processes.clone(),
            loop_process: self.loop_process.clone(),
            thread_process: self.thread_process.clone(),
        };
        *marks = Marks {
            loops: self.loops.len(),
            frames: self.frames.len(),
            stacks: self.stacks.len(),
            tasks: self.tasks.len(),
            threads: self.threads.len(),
        };
        d
    }

    /// Add a delta taken (with [`Recording::take_delta`]) from a recording that started as
    /// this one did; returns the indices of the samples it added.
    pub fn apply(&mut self, d: RecordingDelta) -> std::ops::Range<usize> {
        self.loops.extend(d.loops);
        for f in d.frames {
            self.frames.intern(f);
        }
        for s in d.stacks {
            self.stacks.intern(s);
        }
        for t in d.tasks {
            self.tasks.push(t);
        }
        for t in d.threads {
            self.threads.push(t);
        }
        let from = self.samples.len();
        for s in &d.samples {
            if let Some(task) = s.task {
                self.tasks.touch(task, s.t);
            }
        }
        for s in &d.other_threads {
            self.threads.touch(s.thread, s.t);
        }
        self.samples.extend(d.samples);
        self.failures.extend(d.failures);
        self.other_threads.extend(d.other_threads);
        self.task_counts.extend(d.task_counts);
        self.executors.extend(d.executors);
        self.task_groups.extend(d.task_groups);
        self.paused = d.paused;
        self.ended = self.ended.max(d.ended);
        self.end = d.end;
        self.processes = d.processes;
        self.loop_process = d.loop_process;
        self.thread_process = d.thread_process;
        from..self.samples.len()
    }

    /// Forget what was sampled (keep the loops and the interned names): a fresh start at
    /// `now` for a live view's reset.
    pub fn clear(&mut self, now: f64) {
        self.samples.clear();
        self.failures.clear();
        self.other_threads.clear();
        self.task_counts.clear();
        self.executors.clear();
        self.task_groups.clear();
        self.paused = 0.0;
        self.started = now;
        self.ended = now;
        self.forgotten = Forgotten::default();
    }
}

/// How much of a recording has been handed on ([`Recording::take_delta`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    loops: usize,
    frames: usize,
    stacks: usize,
    tasks: usize,
    threads: usize,
}

impl Marks {
    /// Everything `rec` holds counts as handed on (a copy was made of it).
    pub fn at(rec: &Recording) -> Marks {
        Marks {
            loops: rec.loops.len(),
            frames: rec.frames.len(),
            stacks: rec.stacks.len(),
            tasks: rec.tasks.len(),
            threads: rec.threads.len(),
        }
    }
}

/// What a recording gained since its last delta.
#[derive(Debug, Clone, Default)]
pub struct RecordingDelta {
    loops: Vec<LoopMeta>,
    frames: Vec<StackFrame>,
    stacks: Vec<Vec<u32>>,
    tasks: Vec<String>,
    threads: Vec<String>,
    pub samples: Vec<Sample>,
    pub failures: Vec<FailedSample>,
    pub other_threads: Vec<ThreadSample>,
    pub task_counts: Vec<TaskCountSample>,
    pub executors: Vec<ExecutorSample>,
    pub task_groups: Vec<crate::capture::task_groups::TaskGroupSample>,
    paused: f64,
    ended: f64,
    end: EndReason,
    /// With `--subprocesses`: the processes as they are now (a process that left changed),
    /// and the process of each loop and thread name.
    processes: Vec<ProcessMeta>,
    loop_process: Vec<u16>,
    thread_process: Vec<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(i: i32) -> LoopMeta {
        LoopMeta::test(i)
    }

    fn sample(rec: &mut Recording, t: f64, name: &str, task: &str) -> Sample {
        let stack = rec.intern_stack(&[StackFrame { function: name.into(), file: "/app/x.py".into(), line: 1 }]);
        let task = rec.tasks.intern(task.into());
        Sample {
            t,
            loop_index: 0,
            state: LoopState::Callback,
            activity: ThreadActivity::OnCpu,
            ready: 1,
            lateness: Some(0.001),
            stack,
            loop_frames: 0,
            callback: Some(1),
            task: Some(task),
            busy_for: None,
            gc: GcAt::Unknown,
        }
    }

    /// A loop looked at through the recording lived all of it, looked at on time or not; one
    /// that came and went lived one period past its last look, the period being the mean
    /// spacing of its looks when the sampler fell behind.
    #[test]
    fn lived_counts_the_period_the_looks_really_had() {
        let span = |n: usize, from: f64, every: f64| {
            let mut s = LoopSpan::default();
            for i in 0..n {
                s.add(from + i as f64 * every, i % 2 == 0);
            }
            s
        };
        let whole = (100.0, 102.0);
        // Through the recording: its duration, whatever the spacing.
        assert!((span(200, 100.0, 0.01).lived(0.01, whole, None) - 2.0).abs() < 1e-9);
        assert!((span(49, 100.003, 0.0408).lived(0.01, whole, None) - 2.0).abs() < 1e-9);
        // Came and went in the middle: one period past its last look.
        assert!((span(100, 100.5, 0.01).lived(0.01, whole, None) - 1.0).abs() < 1e-9);
        assert!((span(10, 100.5, 0.04).lived(0.01, whole, None) - 0.4).abs() < 1e-9);
        // Looked at once.
        assert!((span(1, 101.0, 0.0).lived(0.01, whole, None) - 0.01).abs() < 1e-9);
        assert_eq!(LoopSpan::default().lived(0.01, whole, None), 0.0);
        // Found before the recording started, first looked at 2.6 s in (stopping 2,000
        // threads took that long), after the 2 s asked: all of it.
        assert!((span(1, 102.6, 0.0).lived(0.01, (100.0, 102.6), Some(99.9)) - 2.6).abs() < 1e-9);
        assert!((span(3, 101.0, 0.5).lived(0.01, (100.0, 102.0), Some(99.9)) - 2.0).abs() < 1e-9);
        // Found in the middle (a refresh of the thread list), looked at a second later and
        // then on time to the end: from when it was found.
        assert!((span(50, 101.5, 0.01).lived(0.01, (100.0, 102.0), Some(100.5)) - 1.5).abs() < 1e-9);
        // A `found` after the first look (a loop's next run on the same thread) says nothing.
        assert!((span(100, 100.5, 0.01).lived(0.01, whole, Some(100.7)) - 1.0).abs() < 1e-9);
    }

    /// A copy fed deltas in steps ends equal to the recording they came from, ids and all.
    #[test]
    fn deltas_rebuild_the_recording() {
        let mut src = Recording::new(100.0, vec![meta(1)], 10.0);
        let mut copy = src.clone();
        let mut marks = Marks::at(&src);
        let mut all = Vec::new();
        for step in 0..3 {
            for k in 0..5 {
                let s = sample(&mut src, 10.0 + (step * 5 + k) as f64 * 0.01, &format!("f{}", k % 3 + step), &format!("T{step}"));
                src.samples.push(s);
                all.push(s);
            }
            if step == 1 {
                src.loops.push(meta(2));
                src.failures.push(FailedSample { t: 10.2, loop_index: 1, reason: FailReason::TornStack });
            }
            src.ended = 10.0 + step as f64;
            let range = copy.apply(src.take_delta(&mut marks));
            assert_eq!(range.len(), 5);
            assert!(src.samples.is_empty(), "the sender keeps no samples");
        }
        assert_eq!(copy.samples, all);
        assert_eq!(copy.loops.len(), 2);
        assert_eq!(copy.failures.len(), 1);
        assert_eq!(copy.ended, 12.0);
        for s in &copy.samples {
            // Ids mean the same on both sides.
            assert_eq!(
                copy.stack(s.stack).map(|f| f.function.to_string()).collect::<Vec<_>>(),
                src.stack(s.stack).map(|f| f.function.to_string()).collect::<Vec<_>>()
            );
            assert_eq!(copy.tasks.get(s.task.unwrap()), src.tasks.get(s.task.unwrap()));
        }
    }

    /// Forgetting keeps the totals: samples and failed looks counted, the failed share the
    /// same; what is held starts at the cut.
    #[test]
    fn forgetting_keeps_the_totals() {
        let mut rec = Recording::new(100.0, vec![meta(1)], 10.0);
        for i in 0..100 {
            let s = sample(&mut rec, 10.0 + i as f64 * 0.01, "f", "T");
            rec.samples.push(s);
            if i % 10 == 0 {
                rec.failures.push(FailedSample { t: 10.0 + i as f64 * 0.01 + 0.005, loop_index: 0, reason: FailReason::TornStack });
            }
        }
        rec.ended = 11.0;
        let pct = rec.failed_pct();
        rec.forget_before(10.5, true);
        assert_eq!(rec.samples.len(), 50);
        assert_eq!(rec.samples[0].t, 10.5);
        assert_eq!(rec.total_samples(), 100);
        assert_eq!(rec.failures.len(), 5);
        assert!((rec.failed_pct() - pct).abs() < 1e-9);
        assert_eq!(rec.started, 10.5);
        rec.forget_before(10.2, true);
        assert_eq!(rec.total_samples(), 100, "nothing older left to forget");
        rec.clear(11.0);
        assert_eq!(rec.total_samples(), 0);
    }
}
