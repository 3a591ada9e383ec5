//! One event loop, looked at: the per-loop code that `dump` and the sampler share.
//!
//! A look at a loop reads the loop thread's Python stack, the loop's ready queue and timers,
//! and the system call the thread sits in, and decides what the loop is doing. It is a sample
//! only if the reads hold together:
//!
//! - the stack walk reached the bottom of the thread's stack ([`frames`] checks how each
//!   version marks it) and holds the frames that run the loop (asyncio's `_run_once` or
//!   `run_forever`; for uvloop, the Python frame that entered its run: the *anchor*);
//! - the thread still runs this loop, and the loop's attributes are where the figures were
//!   read from (both checked in the figures' own system call).
//!
//! Otherwise the look fails with a [`FailReason`], which callers count, and it is never
//! shown as data.

use std::fs::File;
use std::os::unix::fs::FileExt;

use serde::Serialize;

use crate::asyncio::eventloop::{self, LoopFigures, LoopKind, LoopObjects, LoopReaders};
use crate::asyncio::loopstate::{in_selector_syscall, selector_state, uvloop_state, LoopState};
use crate::process::memory::{Memory, ReadErrorKind};
use crate::process::procfs::{self, Syscall};
use crate::python::frames::{FrameRef, StackFrame, StackReader};
use crate::python::gc::{GcAt, GcWatch};
use crate::python::interp::{self, CurrentTaskSource, PyThread, RunningLoopWatch};
use crate::python::reader::{self, ObjectReader};

/// Why a look at a loop was not a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// The thread's frames changed while we followed them: the walk was cut short (a
    /// generator or coroutine that yielded) or went through frames being reused.
    TornStack,
    /// The stack does not hold the frames that run the loop.
    NoLoopFrames,
    /// An object read made no sense (it changed while we read it, or a pointer went stale).
    Changed,
    /// Memory that should be mapped could not be read.
    Unreadable,
}

impl FailReason {
    pub const ALL: [FailReason; 4] = [FailReason::TornStack, FailReason::NoLoopFrames, FailReason::Changed, FailReason::Unreadable];

    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::TornStack => "torn_stack",
            FailReason::NoLoopFrames => "no_loop_frames",
            FailReason::Changed => "changed",
            FailReason::Unreadable => "unreadable",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FailReason::TornStack => "stack changed while read",
            FailReason::NoLoopFrames => "stack without the loop's frames",
            FailReason::Changed => "objects changed while read",
            FailReason::Unreadable => "memory unreadable",
        }
    }
}

/// Why a look failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookFailure {
    /// The target exited.
    Exited,
    /// The thread no longer runs this loop (it stopped, or another loop took its place).
    LoopGone,
    /// This look failed; another may not.
    Failed(FailReason, String),
}

impl LookFailure {
    fn from_read(e: &reader::Error) -> LookFailure {
        let reason = match e {
            reader::Error::Incomplete(_) => FailReason::TornStack,
            reader::Error::Invalid { .. } => FailReason::Changed,
            reader::Error::Read(r) if r.kind == ReadErrorKind::Gone => return LookFailure::Exited,
            reader::Error::Read(_) => FailReason::Unreadable,
        };
        LookFailure::Failed(reason, e.to_string())
    }
}

/// A task, by the pointers that tell it apart from any task that reuses its memory later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskIdent {
    pub addr: u64,
    /// `task_name` and `task_coro`: a task created at a freed task's address has other ones.
    pub name: u64,
    pub coro: u64,
}

/// One look at a loop.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSample {
    /// Our `CLOCK_MONOTONIC` when the figures were read, in the target's clock.
    pub t: f64,
    pub state: LoopState,
    pub syscall: Option<Syscall>,
    pub figures: LoopFigures,
    /// The thread's stack, innermost first (a very deep one cut in the middle, marked).
    pub frames: Vec<StackFrame>,
    /// How many of the outermost `frames` belong to the loop itself (its dispatch and what
    /// runs it): the frames above them are the callback's.
    pub loop_frames: usize,
    /// Tells callbacks apart: equal in two samples of one run of one callback, different for
    /// another callback (or another run of the same one).
    pub callback: Option<u64>,
    /// Stock loops: the `Handle` being run.
    pub handle: Option<u64>,
    /// The first frame of the callback (uvloop: the frame its C code called).
    pub callback_frame: Option<FrameRef>,
    pub task: Option<TaskIdent>,
    /// Its name (read at every look: see [`text_mark`]).
    pub task_name: Option<String>,
    /// How long the current loop iteration has been running (uvloop keeps its start).
    pub busy_for: Option<f64>,
    /// Was the interpreter collecting garbage (read with the figures).
    pub gc: GcAt,
}

impl LoopSample {
    /// Seconds the most overdue timer is late (positive) or still due in (negative).
    pub fn lateness(&self) -> Option<f64> {
        self.figures.most_overdue().map(|when| self.t - when)
    }
}

/// The longest a read of a loop's figures may take for its lag to count (seconds), and how
/// many reads are tried for one that quick.
const MAX_FIGURES_SPAN: f64 = 0.002;
const FIGURES_TRIES: u32 = 3;

/// Slack on a process's start time (it is kept in clock ticks, 10 ms here; a second spares any
/// rounding and clock adjustment).
const BORN_SLACK: f64 = 1.0;

/// Frames kept around a cut of a very deep stack: the innermost ones (where the time goes)
/// and the outermost ones above the loop's own (what the callback is).
pub const KEEP_INNER: usize = 192;
pub const KEEP_OUTER: usize = 64;

/// The Python frame that entered uvloop's run (uvloop runs in C: no Python frame marks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    frame: u64,
    code: u64,
    /// Seen as the top frame of a thread idle in epoll (rather than guessed by name).
    confirmed: bool,
}

/// Python functions known to call uvloop's `run_until_complete`/`run_forever`: where the loop
/// starts when no idle moment has shown it yet.
const UV_ENTRIES: &[(&str, &str)] = &[
    ("Runner.run", "asyncio/runners.py"),
    ("run", "asyncio/runners.py"),
    ("run", "uvloop/__init__.py"),
    ("asyncio_run", "uvicorn/_compat.py"),
    ("run_app", "aiohttp/web.py"),
];

/// Everything needed to look at one loop again and again.
pub struct LoopProbe {
    pid: i32,
    pub thread: PyThread,
    pub addr: u64,
    pub kind: LoopKind,
    pub class_name: String,
    running: RunningLoopWatch,
    pub objects: LoopObjects,
    syscall: Option<File>,
    stat: Option<File>,
    anchor: Option<Anchor>,
    refs: Vec<FrameRef>,
    words: Vec<u64>,
    also: Vec<u64>,
    /// When the process started, in our `CLOCK_MONOTONIC` seconds: no timer of its loops
    /// can be due before that, so a `when` read before it is a torn read, not a lag.
    born: Option<f64>,
    /// The interpreter's GC state (`None`: not found; every look's is then unknown).
    pub gc: Option<GcWatch>,
}

fn open_task_file(pid: i32, tid: Option<i32>, name: &str) -> Option<File> {
    File::open(format!("/proc/{pid}/task/{}/{name}", tid?)).ok()
}

fn read_small(file: &Option<File>, buf: &mut [u8]) -> Option<usize> {
    file.as_ref()?.read_at(buf, 0).ok()
}

/// What the kernel says of the loop's thread: the system call it sits in and its scheduler
/// state. Read before the target is paused (`--blocking`), which would hide both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kernel {
    pub syscall: Option<Syscall>,
    pub sched: Option<char>,
}

fn base_name(function: &str) -> &str {
    function.rsplit('.').next().unwrap_or(function)
}

impl LoopProbe {
    /// Get ready to look at the loop `addr` that `thread` runs. `Ok(None)`: a loop class
    /// loopspy cannot read (its name).
    pub fn new<M: Memory>(
        pid: i32,
        r: &ObjectReader<M>,
        readers: &mut LoopReaders,
        thread: PyThread,
        addr: u64,
    ) -> reader::Result<Result<LoopProbe, String>> {
        let (kind, class_name) = eventloop::kind_of(r, addr)?;
        let Some(kind) = kind else { return Ok(Err(class_name)) };
        let objects = readers.resolve(r, kind, addr)?;
        let running = RunningLoopWatch::resolve(r, thread.tstate)?;
        // The kernel's files of the thread are under its id in our PID namespace.
        let syscall = open_task_file(pid, thread.host_tid, "syscall");
        let stat = open_task_file(pid, thread.host_tid, "stat");
        let gc = r.ptr(thread.tstate + r.layout().thread.interp).ok().and_then(|interp| GcWatch::resolve(pid, r, interp));
        Ok(Ok(LoopProbe {
            pid,
            thread,
            addr,
            kind,
            class_name,
            running,
            objects,
            syscall,
            stat,
            anchor: None,
            refs: Vec::new(),
            words: Vec::new(),
            also: Vec::new(),
            born: procfs::started_monotonic(pid),
            gc,
        }))
    }

    /// The frames of the last look, innermost first, uncut.
    pub fn frame_refs(&self) -> &[FrameRef] {
        &self.refs
    }

    /// The kernel's view of the loop thread, now.
    pub fn kernel(&self) -> Kernel {
        let mut buf = [0u8; 512];
        let read_syscall = |buf: &mut [u8; 512]| read_small(&self.syscall, buf).and_then(|n| procfs::parse_syscall(&buf[..n]).ok());
        let mut syscall = read_syscall(&mut buf);
        let sched = read_small(&self.stat, &mut buf).and_then(|n| procfs::parse_stat_state(&buf[..n]).ok());
        if procfs::worth_rereading(syscall, sched) {
            syscall = read_syscall(&mut buf).or(syscall);
        }
        Kernel { syscall, sched }
    }

    /// Does the thread still run this loop? (A slow check, for when a look failed.)
    pub fn still_running<M: Memory>(&self, r: &ObjectReader<M>) -> bool {
        matches!(interp::running_loop(r, self.thread.tstate), Ok(Some(a)) if a == self.addr)
    }

    /// One look. `clock_offset`: the target's time-namespace offset.
    pub fn look<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        readers: &mut LoopReaders,
        stacks: &mut StackReader,
        tasks: &CurrentTaskSource,
        clock_offset: f64,
        kernel: Kernel,
    ) -> Result<LoopSample, LookFailure> {
        match self.look_once(r, readers, stacks, tasks, clock_offset, kernel) {
            Ok(s) => Ok(s),
            Err(LookFailure::Failed(reason, detail)) => {
                // A loop that stopped reads as anything: say it stopped.
                if !self.still_running(r) {
                    return Err(if procfs::is_dead(self.pid) { LookFailure::Exited } else { LookFailure::LoopGone });
                }
                Err(LookFailure::Failed(reason, detail))
            }
            Err(e) => Err(e),
        }
    }

    fn look_once<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        readers: &mut LoopReaders,
        stacks: &mut StackReader,
        tasks: &CurrentTaskSource,
        clock_offset: f64,
        kernel: Kernel,
    ) -> Result<LoopSample, LookFailure> {
        let fail = |e: reader::Error| LookFailure::from_read(&e);
        let syscall = kernel.syscall;
        let mut frames = Vec::new();
        let mut refs = std::mem::take(&mut self.refs);
        let walked = stacks.sample_stack(r, self.thread.tstate, &mut refs, &mut frames);
        self.refs = refs;
        walked.map_err(|e| match LookFailure::from_read(&e) {
            // Anything wrong in a walk is the stack changing under it.
            LookFailure::Failed(_, detail) => LookFailure::Failed(FailReason::TornStack, detail),
            other => other,
        })?;

        // Where the loop's own frames start, and what the loop is doing.
        let (mut state, loop_at) = match self.kind {
            LoopKind::Selector => match selector_state(&frames) {
                Some((state, at)) => (state, Some(at)),
                None => return Err(LookFailure::Failed(FailReason::NoLoopFrames, "no _run_once or run_forever frame on the stack".into())),
            },
            LoopKind::Uvloop => self.uv_state(&frames, syscall)?,
        };
        if crate::asyncio::loopstate::stopped(kernel.sched) {
            state = LoopState::Stopped;
        }

        // The figures, with the running-loop check in the same system call.
        self.also.clear();
        self.also.extend(self.running.addrs());
        let gc_at = self.also.len();
        if let Some(gc) = &self.gc {
            self.also.extend(gc.addrs());
        }
        let scan_ready = state == LoopState::Callback;
        // The timers are read somewhere between `before` and `now`: the lag is known to that
        // span. A read normally takes tens of microseconds; one that took longer (loopspy was
        // kept off the CPU meanwhile) is read again, and if none is quick the lag is left
        // unknown rather than overstated.
        let mut tries = 0;
        let (mut figures, now) = loop {
            tries += 1;
            let before = procfs::monotonic_now();
            let figures = readers.quick(r, self.addr, &mut self.objects, &self.also, &mut self.words, scan_ready).map_err(fail)?;
            let now = procfs::monotonic_now();
            if now - before <= MAX_FIGURES_SPAN {
                break (figures, now);
            }
            if tries >= FIGURES_TRIES {
                let mut figures = figures;
                figures.forget_timers();
                break (figures, now);
            }
        };
        let t = now + clock_offset;
        if let Some(born) = self.born {
            figures.drop_timers_before(born + clock_offset - BORN_SLACK);
        }
        match self.running.loop_from(&self.words) {
            Some(l) if l == self.addr => {}
            Some(_) => return Err(LookFailure::LoopGone),
            None => {
                if !self.still_running(r) {
                    return Err(LookFailure::LoopGone);
                }
                self.running = RunningLoopWatch::resolve(r, self.thread.tstate).map_err(fail)?;
            }
        }

        // Who runs, for a busy loop.
        let busy = matches!(state, LoopState::Callback | LoopState::Loop);
        let (mut handle, mut callback_frame, mut task, mut task_name) = (None, None, None, None);
        let mut callback = None;
        if state == LoopState::Callback {
            task = current_task(r, tasks, &self.thread, self.addr).map_err(fail)?;
            task_name = task.map(|t| crate::asyncio::callback::task_name(r, t.addr)).transpose().map_err(fail)?;
            match self.kind {
                LoopKind::Selector => {
                    // `self` of `Handle._run`, and the callback's own frame above it.
                    let h = loop_at.expect("a callback state has its dispatch frame");
                    let run = &self.refs[h];
                    let obj = crate::python::frames::local(r, run, 0).map_err(fail)?;
                    if !r.is_subclass_by_name(r.type_of(obj).map_err(fail)?, "Handle").map_err(fail)? {
                        return Err(LookFailure::Failed(FailReason::Changed, "self of Handle._run is not a Handle".into()));
                    }
                    handle = Some(obj);
                    callback_frame = h.checked_sub(1).map(|i| self.refs[i]);
                    // A freed Handle's memory is reused by the next one: the loop iteration
                    // (`_run_once`'s `end_time`, a new time each iteration) and the task tell
                    // two runs of the same callback apart.
                    let iteration = self.iteration_mark(r, stacks, &frames, h).map_err(fail)?;
                    callback = Some(mix(&[obj, callback_frame.map_or(0, |f| f.code), iteration, text_mark(task_name.as_deref())]));
                }
                LoopKind::Uvloop => {
                    callback_frame = loop_at.and_then(|a| a.checked_sub(1)).map(|i| self.refs[i]);
                    // Within one libuv iteration, a task or the frame uvloop's C code called
                    // tells callbacks apart.
                    let iteration = figures.iteration.unwrap_or(0);
                    let who = match (task, callback_frame) {
                        (Some(t), _) => mix(&[t.addr, t.coro, text_mark(task_name.as_deref())]),
                        (None, Some(f)) => mix(&[f.addr, f.code]),
                        (None, None) => 0,
                    };
                    callback = Some(mix(&[who, iteration]));
                }
            }
        }
        let gc = match (&self.gc, self.words.get(gc_at..)) {
            (Some(w), Some(words)) => w.decode(words),
            _ => GcAt::Unknown,
        };
        let busy_for = figures.loop_time.filter(|_| busy).map(|lt| (t - lt).max(0.0));
        let loop_frames = loop_at.map_or(0, |i| frames.len() - i);
        let frames = cut_middle(frames, loop_frames);
        let loop_frames = loop_frames.min(frames.len());
        Ok(LoopSample { t, state, syscall, figures, frames, loop_frames, callback, handle, callback_frame, task, task_name, busy_for, gc })
    }

    /// Which iteration of the stock loop this is: the bits of `_run_once`'s `end_time` (the
    /// loop's clock when the iteration started); 0 when it cannot be read.
    fn iteration_mark<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        stacks: &mut StackReader,
        frames: &[StackFrame],
        above: usize,
    ) -> reader::Result<u64> {
        let Some(i) = frames[above..].iter().position(|f| base_name(&f.function) == "_run_once").map(|i| i + above) else {
            return Ok(0);
        };
        let frame = self.refs[i];
        let Some(slot) = stacks.local_index(r, frame.code, "end_time")? else { return Ok(0) };
        let value = crate::python::frames::local(r, &frame, slot)?;
        Ok(r.float(value)?.to_bits())
    }

    /// uvloop: the loop's state from the frames above its anchor. Idle in epoll with nothing
    /// above the anchor shows (or moves) the anchor; before one is seen, a known entry
    /// function stands in for it.
    fn uv_state(&mut self, frames: &[StackFrame], syscall: Option<Syscall>) -> Result<(LoopState, Option<usize>), LookFailure> {
        let idle_syscall = in_selector_syscall(syscall, None);
        let at = |a: &Anchor, refs: &[FrameRef]| refs.iter().position(|f| f.addr == a.frame && f.code == a.code);
        let mut found = self.anchor.and_then(|a| at(&a, &self.refs));
        if let (Some(i), true) = (found, idle_syscall) {
            if i > 0 && !self.anchor.is_some_and(|a| a.confirmed) {
                // Idle, yet frames above a guessed anchor: the guess was wrong.
                found = None;
            }
        }
        if found.is_none() {
            if idle_syscall && !self.refs.is_empty() {
                let top = self.refs[0];
                self.anchor = Some(Anchor { frame: top.addr, code: top.code, confirmed: true });
                found = Some(0);
            } else if let Some(i) = guess_uv_anchor(frames, &self.refs) {
                let f = self.refs[i];
                self.anchor = Some(Anchor { frame: f.addr, code: f.code, confirmed: false });
                found = Some(i);
            } else if self.anchor.is_some() || frames.is_empty() {
                return Err(LookFailure::Failed(FailReason::NoLoopFrames, "the frame that runs uvloop is not on the stack".into()));
            }
        }
        // No anchor known yet and none to guess: all the frames are the callback's.
        Ok((uvloop_state(found, idle_syscall), found))
    }
}

/// Where uvloop's run was entered, without an idle moment to show it: a known entry function
/// (`asyncio.run`, `uvloop.run`, aiohttp's `run_app`...); else, where frames say they were
/// called from C (3.11+), the application frame under the outermost frame C called from one
/// (the program's own entries, threads' bootstrap and `runpy`, are called from the standard
/// library).
fn guess_uv_anchor(frames: &[StackFrame], refs: &[FrameRef]) -> Option<usize> {
    if let Some(i) = frames.iter().position(|f| UV_ENTRIES.iter().any(|(func, file)| &*f.function == *func && f.file.ends_with(file))) {
        return Some(i);
    }
    let last = refs.len().checked_sub(1)?;
    (0..last)
        .filter(|i| refs[*i].entered_from_c == Some(true) && !crate::python::frames::is_library_file(&frames[i + 1].file))
        .max()
        .map(|i| i + 1)
}

/// A hash of a task's name: what tells a task apart from a task later created at its freed
/// address (whose name and coroutine objects may even reuse the old ones' memory).
fn text_mark(text: Option<&str>) -> u64 {
    text.map_or(0, |t| t.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)))
}

/// The task the loop running in `thread` is executing, with the pointers that identify it.
fn current_task<M: Memory>(
    r: &ObjectReader<M>,
    tasks: &CurrentTaskSource,
    thread: &PyThread,
    event_loop: u64,
) -> reader::Result<Option<TaskIdent>> {
    let Some(addr) = tasks.task(r, thread, event_loop)? else { return Ok(None) };
    let a = r.layout().asyncio;
    let (lo, hi) = (a.task_coro.min(a.task_name), a.task_coro.max(a.task_name));
    let raw = r.bytes(addr + lo, (hi - lo + 8) as usize)?;
    let word = |off: u64| reader::le::u64(&raw, off - lo);
    Ok(Some(TaskIdent { addr, name: word(a.task_name)?, coro: word(a.task_coro)? }))
}

/// A stack deeper than [`KEEP_INNER`] + [`KEEP_OUTER`] frames above the loop's own, cut in
/// the middle with a frame that says how many are not shown.
pub fn cut_middle(mut frames: Vec<StackFrame>, loop_frames: usize) -> Vec<StackFrame> {
    let above = frames.len() - loop_frames.min(frames.len());
    if above <= KEEP_INNER + KEEP_OUTER + 1 {
        return frames;
    }
    let omitted = above - KEEP_INNER - KEEP_OUTER;
    let marker = StackFrame { function: format!("[... {omitted} frames not shown ...]").into(), file: "".into(), line: 0 };
    frames.splice(KEEP_INNER..KEEP_INNER + omitted, std::iter::once(marker));
    frames
}

/// A 64-bit mix of a few words (FxHash-like), to make callback identities.
fn mix(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(function: &str, file: &str) -> StackFrame {
        StackFrame { function: function.into(), file: file.into(), line: 1 }
    }

    #[test]
    fn deep_stacks_are_cut_visibly_keeping_both_ends_and_the_loop() {
        let mut frames: Vec<StackFrame> = (0..3000).map(|i| f(&format!("rec{i}"), "/app/r.py")).collect();
        frames.push(f("Handle._run", "/x/asyncio/events.py"));
        frames.push(f("<module>", "/app/main.py"));
        let cut = cut_middle(frames, 2);
        assert_eq!(cut.len(), KEEP_INNER + 1 + KEEP_OUTER + 2);
        assert_eq!(&*cut[0].function, "rec0");
        assert_eq!(&*cut[KEEP_INNER].function, format!("[... {} frames not shown ...]", 3000 - KEEP_INNER - KEEP_OUTER));
        assert_eq!(&*cut[KEEP_INNER + 1].function, format!("rec{}", 3000 - KEEP_OUTER));
        assert_eq!(&*cut[cut.len() - 1].function, "<module>");
        let short: Vec<StackFrame> = (0..10).map(|i| f(&format!("x{i}"), "/a.py")).collect();
        assert_eq!(cut_middle(short.clone(), 3), short);
    }
}
