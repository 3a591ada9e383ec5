//! The figures an on-call engineer needs, as pure functions of a [`Recording`]: time in
//! `selector.select` versus busy, loop lag, ready-queue depth and its trend, per-second
//! series, and blocking episodes with the frame, task and syscall that blocked the loop.
//!
//! No I/O, no clocks: everything comes from the samples, so every rule here is unit-tested on
//! hand-made samples and the end-to-end tests check the results against targets that measure
//! themselves.

use std::collections::HashMap;

use serde::Serialize;

use super::stream::{Stream, StreamOptions};
use crate::asyncio::loopstate::LoopState;
use crate::capture::recording::{Recording, Sample};
use crate::python::frames::{is_library_file, is_stdlib_file as stdlib_dir};
use crate::python::gc::GcAt;

/// Default blocking threshold: asyncio's own `slow_callback_duration`.
pub const DEFAULT_THRESHOLD: f64 = 0.100;
/// Samples an episode needs: one busy sample between two failed looks says nothing about
/// how long the callback ran.
pub const MIN_EPISODE_SAMPLES: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// A busy stretch in one callback at least this long (seconds) is a blocking episode.
    pub threshold: f64,
    /// Width of the per-window series (seconds).
    pub window: f64,
    /// Only samples at or after this time (target clock), for a live view of recent history.
    pub since: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        Options { threshold: DEFAULT_THRESHOLD, window: 1.0, since: None }
    }
}

/// Whether the loop is doing work (not waiting for it) in a sample.
pub fn is_busy(state: LoopState) -> bool {
    matches!(state, LoopState::Callback | LoopState::Loop)
}

/// Percentiles of loop lag, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LagStats {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Samples whose lag is unknown (the timers kept changing while they were read): left
    /// out of the percentiles.
    pub unknown_samples: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReadyStats {
    pub mean: f64,
    pub max: u32,
    pub last: u32,
    /// Least-squares slope of the depth over the recording, callbacks per second: positive
    /// when the queue grows.
    pub trend_per_s: f64,
}

/// What a sample's time counts as (in flame graphs): blocking the loop (inside a blocking
/// episode), busy (shorter callbacks, loop bookkeeping), idle in select, unknown, stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Blocked,
    Busy,
    Idle,
    Unknown,
    Stopped,
}

/// One window of the per-second series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Seconds since the start of the recording.
    pub start_s: f64,
    pub samples: u32,
    pub busy_pct: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub ready_mean: f64,
    pub ready_max: u32,
    /// Blocking episodes that started in this window.
    pub episodes: u32,
}

/// A stretch in which the loop stayed out of select in one callback for at least the
/// threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    pub loop_index: u16,
    /// Start and end in the target's `CLOCK_MONOTONIC` seconds (as `loop.time()`).
    pub start: f64,
    pub end: f64,
    /// Seconds since the start of the recording.
    pub start_s: f64,
    pub duration_ms: f64,
    /// The most `duration_ms` can be off by: the sampling gaps at its two ends (one sample
    /// interval when sampling kept its rate; more when the sampler was late, e.g. starved
    /// of CPU).
    pub duration_error_ms: f64,
    /// Still going when the recording ended (its duration is a lower bound).
    pub ongoing: bool,
    pub samples: u32,
    /// The frame that blocked: the deepest application frame the callback was in for most
    /// of the episode (else, with no application frame, the innermost frame).
    pub function: String,
    pub file: String,
    pub line: i32,
    /// The innermost frame seen most often: where the time went (often a library or the
    /// standard library, called by `function`).
    pub innermost: FrameInfo,
    pub task: Option<String>,
    /// On a CPU in most samples (computing), or waiting in the kernel.
    pub on_cpu: bool,
    /// The system call it waited in most often, when waiting.
    pub waiting_in: Option<String>,
    /// Interned stack seen most often in the episode.
    #[serde(skip)]
    pub stack: u32,
    /// Share of its samples, in percent, in which the interpreter was collecting garbage;
    /// `None` when the GC state could not be read (see [`GcShare`]).
    pub gc_pct: Option<f64>,
    /// The generation collected in most of those samples, where the counts tell it.
    pub gc_generation: Option<u8>,
    /// When the episode is blamed on the garbage collector (`function` is
    /// [`GC_FUNCTION`]): the frame that would have been blamed, the one the collection
    /// interrupted (it allocated, or called `gc.collect()`).
    pub gc_interrupted: Option<FrameInfo>,
}

/// What an episode mostly spent collecting garbage is blamed on.
pub const GC_FUNCTION: &str = crate::python::gc::GC_FRAME;

/// An episode is blamed on the garbage collector when at least this share (percent) of its
/// samples were taken while the interpreter was collecting.
pub const GC_BLAME_PCT: f64 = 50.0;

/// The GC state of a run's busy samples, counted as they come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcShare {
    /// Samples whose GC state was read.
    pub known: u32,
    /// Of them, taken while collecting.
    pub collecting: u32,
    /// Collecting samples per generation named.
    pub generations: [u32; 3],
}

impl GcShare {
    pub fn add(&mut self, gc: GcAt) {
        match gc {
            GcAt::Unknown => {}
            GcAt::Idle => self.known += 1,
            GcAt::Collecting(g) => {
                self.known += 1;
                self.collecting += 1;
                if let Some(g) = g.filter(|g| *g <= 2) {
                    self.generations[g as usize] += 1;
                }
            }
        }
    }

    pub fn pct(&self) -> Option<f64> {
        (self.known > 0).then(|| 100.0 * self.collecting as f64 / self.known as f64)
    }

    /// The generation named most often (ties: the older one).
    pub fn generation(&self) -> Option<u8> {
        (0..3u8).rev().max_by_key(|g| self.generations[*g as usize]).filter(|g| self.generations[*g as usize] > 0)
    }

    /// Set an episode's GC figures, and blame the collector when it held most of it.
    pub fn apply(&self, e: &mut Episode) {
        e.gc_pct = self.pct();
        e.gc_generation = if self.collecting > 0 { self.generation() } else { None };
        if e.gc_pct.is_some_and(|p| p >= GC_BLAME_PCT) {
            let was = FrameInfo {
                function: std::mem::replace(&mut e.function, GC_FUNCTION.into()),
                file: std::mem::take(&mut e.file),
                line: e.line,
            };
            e.line = 0;
            e.gc_interrupted = Some(was);
        }
    }
}

/// A frame, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameInfo {
    pub function: String,
    pub file: String,
    pub line: i32,
}

/// The number of pending tasks over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStats {
    /// How many counts were taken (about one a second).
    pub counts: u32,
    pub pending_last: usize,
    pub pending_max: usize,
    /// Least-squares slope of the pending count, tasks per second: positive when tasks pile up.
    pub pending_trend_per_s: f64,
    /// A count hit the registry limit (the numbers are lower bounds).
    pub truncated: bool,
}

/// One task count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskPoint {
    /// Seconds since the start of the recording.
    pub t_s: f64,
    pub pending: usize,
    pub total: usize,
}

/// Everything about one loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoopSummary {
    /// Which loop of the recording (its metadata stands beside the summary in reports).
    #[serde(skip)]
    pub loop_index: u16,
    pub samples: u32,
    #[serde(skip)]
    pub wall_s: f64,
    /// Share of wall time idle in `selector.select` / epoll, and busy (callbacks and loop
    /// bookkeeping); the rest is unknown (samples whose state could not be told).
    pub select_pct: f64,
    pub busy_pct: f64,
    pub unknown_pct: f64,
    /// Share of wall time the process was stopped (SIGSTOP, Ctrl-Z, a debugger).
    pub stopped_pct: f64,
    pub lag: LagStats,
    pub ready: ReadyStats,
    /// How long the current iteration had been running at the last sample, if busy then.
    pub busy_now_ms: Option<f64>,
    /// The longest stretch of busy samples (any callbacks).
    pub longest_busy_ms: f64,
    /// Per-window figures (`series` in the JSON report).
    #[serde(rename = "series")]
    pub windows: Vec<Window>,
    pub episodes: Vec<Episode>,
    /// Episodes not listed in `episodes` (a long recording lists the longest, at most
    /// `analysis::stream::MAX_LISTED_EPISODES`); they count in the series and the blocking
    /// frames.
    #[serde(skip_serializing_if = "is_zero")]
    pub episodes_omitted: u64,
    /// Those episodes, summed by frame.
    #[serde(skip)]
    pub omitted_frames: FrameTotals,
    /// Pending tasks over the recording (counted about once a second).
    pub tasks: Option<TaskStats>,
    pub task_series: Vec<TaskPoint>,
}

/// A frame that blocked the loop, over all episodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockingFrame {
    pub function: String,
    pub file: String,
    pub line: i32,
    pub blocked_ms: f64,
    pub episodes: u32,
    pub longest_ms: f64,
    /// On CPU in most of its episodes.
    pub on_cpu: bool,
    pub waiting_in: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub threshold_ms: f64,
    pub loops: Vec<LoopSummary>,
    /// Frames that blocked the loop, most blocked time first.
    pub blocking_frames: Vec<BlockingFrame>,
    /// Why the loops are slow and what to do (`analysis::diagnosis`), per loop, most urgent
    /// first.
    pub diagnoses: Vec<crate::analysis::diagnosis::Diagnosis>,
}

/// Anonymous helper frames (generator expressions, comprehensions, lambdas): they stand for
/// the function that made them, which is blamed instead.
fn is_anonymous(function: &str) -> bool {
    let last = function.rsplit('.').next().unwrap_or(function);
    matches!(last, "<genexpr>" | "<listcomp>" | "<setcomp>" | "<dictcomp>" | "<lambda>")
}

/// A frame must be on the stack in this share of an episode's samples to be blamed.
pub const BLAME_PRESENCE: f64 = 0.75;

/// What a busy stretch is blamed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blame {
    pub function: String,
    pub file: String,
    pub line: i32,
    pub innermost: FrameInfo,
}

/// The callback's frames of a sample (innermost first): the stack above the loop's own.
pub fn callback_frames<'a>(rec: &'a Recording, s: &Sample) -> Vec<&'a crate::python::frames::StackFrame> {
    let stack: Vec<_> = rec.stack(s.stack).collect();
    let keep = stack.len().saturating_sub(s.loop_frames as usize);
    stack[..keep].to_vec()
}

/// Blame a stretch of busy samples: the deepest application frame (not an anonymous helper)
/// present in at least [`BLAME_PRESENCE`] of them; without one, the deepest installed-package
/// frame so present; else the innermost frame seen most often. Frames of the loop itself
/// (and what runs it, down to the program's entry) are never blamed.
pub fn blame(rec: &Recording, samples: &[&Sample]) -> Option<Blame> {
    let mut stacks = super::stream::Tally::default();
    for s in samples {
        stacks.add((s.stack, s.loop_frames));
    }
    blame_counts(rec, stacks.items())
}

/// [`blame`] from how many samples saw each `(stack, loop frames)` (in the order first seen).
pub fn blame_counts(rec: &Recording, stacks: &[((u32, u16), u32)]) -> Option<Blame> {
    struct Seen {
        count: usize,
        depth: usize,
        lines: Vec<(i32, usize)>,
        kind: u8,
    }
    let mut seen: HashMap<(std::sync::Arc<str>, std::sync::Arc<str>), Seen> = HashMap::new();
    let mut innermost: Vec<((String, String, i32), usize)> = Vec::new();
    let mut n = 0usize;
    for &((stack, loop_frames), weight) in stacks {
        let weight = weight as usize;
        let all: Vec<_> = rec.stack(stack).collect();
        let keep = all.len().saturating_sub(loop_frames as usize);
        // The collector's frame on top of a sample taken while collecting is not code.
        let skip = all[..keep].iter().take_while(|f| crate::python::gc::is_gc_frame(f)).count();
        let frames = &all[skip..keep];
        let Some(top) = frames.first() else { continue };
        n += weight;
        innermost.push(((top.function.to_string(), top.file.to_string(), top.line), weight));
        let mut counted: Vec<(std::sync::Arc<str>, std::sync::Arc<str>)> = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let depth = frames.len() - i; // 1 = the frame the loop called
            let key = (f.function.clone(), f.file.clone());
            let e = seen.entry(key.clone()).or_insert_with(|| Seen {
                count: 0,
                depth: 0,
                lines: Vec::new(),
                kind: if !is_library_file(&f.file) {
                    0
                } else if !stdlib_dir(&f.file) {
                    1
                } else {
                    2
                },
            });
            e.depth = e.depth.max(depth);
            e.lines.push((f.line, weight));
            if !counted.contains(&key) {
                e.count += weight;
                counted.push(key);
            }
        }
    }
    if n == 0 {
        return None;
    }
    let (function, file, line) = mode_weighted(innermost.into_iter())?;
    let innermost = FrameInfo { function, file, line };
    let need = (n as f64 * BLAME_PRESENCE).ceil() as usize;
    for kind in [0u8, 1] {
        let best = seen
            .iter()
            .filter(|((func, _), e)| e.kind == kind && e.count >= need && !is_anonymous(func))
            .max_by_key(|(key, e)| (e.depth, std::cmp::Reverse(key.0.clone()), std::cmp::Reverse(key.1.clone())));
        if let Some(((function, file), e)) = best {
            let line = mode_weighted(e.lines.iter().copied()).unwrap_or(0);
            return Some(Blame { function: function.to_string(), file: file.to_string(), line, innermost });
        }
    }
    Some(Blame { function: innermost.function.clone(), file: innermost.file.clone(), line: innermost.line, innermost })
}

pub(crate) fn mode<K: Eq + std::hash::Hash + Clone>(items: impl Iterator<Item = K>) -> Option<K> {
    mode_weighted(items.map(|k| (k, 1)))
}

/// The item with the largest total weight; ties go to the one seen first.
pub fn mode_weighted<K: Eq + std::hash::Hash + Clone>(items: impl Iterator<Item = (K, usize)>) -> Option<K> {
    let mut counts: HashMap<K, usize> = HashMap::new();
    let mut order: Vec<K> = Vec::new();
    for (k, w) in items {
        let c = counts.entry(k.clone()).or_insert(0);
        if *c == 0 {
            order.push(k.clone());
        }
        *c += w;
    }
    let mut best: Option<(K, usize)> = None;
    for k in order {
        let c = counts[&k];
        if best.as_ref().is_none_or(|(_, bc)| c > *bc) {
            best = Some((k, c));
        }
    }
    best.map(|(k, _)| k)
}

/// The callback running at the end of the recording on a loop: how long it has run (from
/// the start of its run, as an episode's start) and what it is blamed on.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentRun {
    pub duration_ms: f64,
    pub samples: usize,
    pub blame: Option<Blame>,
    pub task: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Frames that blocked, summed over the episodes of these loops, listed or not.
pub fn blocking_frames_of<'a>(loops: impl IntoIterator<Item = &'a LoopSummary>) -> Vec<BlockingFrame> {
    let mut totals = FrameTotals::default();
    for l in loops {
        for e in &l.episodes {
            totals.add(e);
        }
        totals.merge(&l.omitted_frames);
    }
    totals.frames()
}

/// Frames that blocked, summed over episodes.
pub fn blocking_frames(episodes: &[&Episode]) -> Vec<BlockingFrame> {
    let mut totals = FrameTotals::default();
    for e in episodes {
        totals.add(e);
    }
    totals.frames()
}

/// Episodes summed by the frame blamed, as [`blocking_frames`] reports them: what a stream
/// keeps of the episodes it no longer lists (`StreamOptions::max_listed`), in memory that
/// grows with the frames, not the episodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameTotals {
    order: Vec<FrameAcc>,
    /// Function → file → position in `order` (looked up by `&str`, without a copy).
    index: HashMap<String, HashMap<String, usize>>,
}

#[derive(Debug, Clone, PartialEq)]
struct FrameAcc {
    function: String,
    file: String,
    blocked_ms: f64,
    episodes: u32,
    longest_ms: f64,
    lines: super::stream::Tally<i32>,
    on_cpu: u32,
    waits: super::stream::Tally<String>,
    waited: u32,
}

/// Distinct frames a [`FrameTotals`] keeps; episodes of any other frame are summed as
/// [`OTHER_FRAMES`] (a target that makes up new functions cannot grow it without end).
pub const MAX_TOTALLED_FRAMES: usize = 2000;
/// The function name of the frames past [`MAX_TOTALLED_FRAMES`].
pub const OTHER_FRAMES: &str = "<other frames>";

impl FrameTotals {
    /// The totals of `function` in `file` (those of [`OTHER_FRAMES`] past the cap).
    fn slot(&mut self, function: &str, file: &str) -> &mut FrameAcc {
        let known = self.index.get(function).and_then(|files| files.get(file)).copied();
        let i = match known {
            Some(i) => i,
            None => {
                let (function, file) = if self.order.len() >= MAX_TOTALLED_FRAMES { (OTHER_FRAMES, "") } else { (function, file) };
                match self.index.get(function).and_then(|files| files.get(file)) {
                    Some(i) => *i,
                    None => {
                        self.order.push(FrameAcc {
                            function: function.to_string(),
                            file: file.to_string(),
                            blocked_ms: 0.0,
                            episodes: 0,
                            longest_ms: 0.0,
                            lines: Default::default(),
                            on_cpu: 0,
                            waits: Default::default(),
                            waited: 0,
                        });
                        self.index.entry(function.to_string()).or_default().insert(file.to_string(), self.order.len() - 1);
                        self.order.len() - 1
                    }
                }
            }
        };
        &mut self.order[i]
    }

    pub fn add(&mut self, e: &Episode) {
        let f = self.slot(&e.function, &e.file);
        f.blocked_ms += e.duration_ms;
        f.episodes += 1;
        f.longest_ms = f.longest_ms.max(e.duration_ms);
        f.lines.add(e.line);
        if e.on_cpu {
            f.on_cpu += 1;
        } else if let Some(w) = &e.waiting_in {
            f.waits.add(w.clone());
            f.waited += 1;
        }
    }

    /// Add `other`'s totals to these.
    pub fn merge(&mut self, other: &FrameTotals) {
        for o in &other.order {
            let f = self.slot(&o.function, &o.file);
            f.blocked_ms += o.blocked_ms;
            f.episodes += o.episodes;
            f.longest_ms = f.longest_ms.max(o.longest_ms);
            f.lines.merge(&o.lines);
            f.on_cpu += o.on_cpu;
            f.waits.merge(&o.waits);
            f.waited += o.waited;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Episodes summed, and their blocked time (ms).
    pub fn total(&self) -> (u64, f64) {
        self.order.iter().fold((0, 0.0), |(n, ms), f| (n + f.episodes as u64, ms + f.blocked_ms))
    }

    /// Most blocked time first.
    pub fn frames(&self) -> Vec<BlockingFrame> {
        let mut by_frame: Vec<BlockingFrame> = self
            .order
            .iter()
            .map(|f| {
                let on_cpu = f.on_cpu > f.waited;
                BlockingFrame {
                    function: f.function.clone(),
                    file: f.file.clone(),
                    line: f.lines.mode().unwrap_or(0),
                    blocked_ms: f.blocked_ms,
                    episodes: f.episodes,
                    longest_ms: f.longest_ms,
                    on_cpu,
                    waiting_in: if on_cpu { None } else { f.waits.mode() },
                }
            })
            .collect();
        // Longest first; equal times (to a nanosecond: sums in another order differ in the
        // last bits) by name, so the order does not hang on which episode came first.
        let key = |f: &BlockingFrame| (f.blocked_ms * 1e6).round();
        by_frame.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| (&a.function, &a.file).cmp(&(&b.function, &b.file))));
        by_frame
    }
}

/// Analyse a recording: its samples streamed through [`super::stream::Stream`] (the same
/// computation `top` keeps up to date as samples arrive).
pub fn analyze(rec: &Recording, opts: &Options) -> Analysis {
    let since = opts.since.unwrap_or(f64::MIN);
    let origin = opts.since.unwrap_or(rec.started).max(rec.started);
    let stream = Stream::over(
        rec,
        StreamOptions {
            keep_threshold: opts.threshold,
            window: opts.window,
            origin,
            interval: rec.interval(),
            started: rec.started,
            since,
            max_episodes: None,
            fold: false,
            max_windows: None,
            max_listed: Some(super::stream::MAX_LISTED_EPISODES),
        },
    );
    analysis_of(&stream, rec, opts.threshold)
}

/// The figures of a stream now, episodes at least `threshold` (seconds) long.
pub fn analysis_of(stream: &Stream, rec: &Recording, threshold: f64) -> Analysis {
    let loops = stream.summaries(rec, threshold);
    let diagnoses = crate::analysis::diagnosis::for_loops(&loops, rec);
    Analysis { threshold_ms: threshold * 1e3, blocking_frames: blocking_frames_of(&loops), loops, diagnoses }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capture::recording::{LoopMeta, ThreadActivity};
    use crate::python::frames::StackFrame;

    fn frame(function: &str, file: &str, line: i32) -> StackFrame {
        StackFrame { function: function.into(), file: file.into(), line }
    }

    /// A recording at `rate` Hz from a compact script: one char per sample.
    /// `.` idle; `a`/`b` busy in callback A/B on CPU (in `app_a` / `app_b`); `s` busy in
    /// callback S sleeping (in `sleeper`); `?` unknown.
    pub(crate) fn script(rate: f64, s: &str) -> Recording {
        let meta = LoopMeta::test(1);
        let mut rec = Recording::new(rate, vec![meta], 100.0);
        let idle = rec.intern_stack(&[frame("EpollSelector.select", "/usr/lib/python3.12/selectors.py", 468)]);
        let loop_frames = [
            frame("Handle._run", "/usr/lib/python3.12/asyncio/events.py", 84),
            frame("BaseEventLoop._run_once", "/usr/lib/python3.12/asyncio/base_events.py", 1971),
        ];
        let mk = |rec: &mut Recording, top: &[StackFrame]| {
            let mut all = top.to_vec();
            all.extend_from_slice(&loop_frames);
            rec.intern_stack(&all)
        };
        let a = mk(&mut rec, &[frame("app_a", "/srv/app.py", 10)]);
        let b = mk(&mut rec, &[frame("decode", "/usr/lib/python3.12/json/decoder.py", 337), frame("app_b", "/srv/app.py", 20)]);
        let sl = mk(&mut rec, &[frame("sleeper", "/srv/app.py", 30)]);
        let task = rec.tasks.intern("Task-7".into());
        for (i, c) in s.chars().enumerate() {
            let t = 100.0 + i as f64 / rate;
            let (state, activity, stack, callback, task) = match c {
                '.' => (LoopState::Idle, ThreadActivity::Waiting(232), idle, None, None),
                'a' => (LoopState::Callback, ThreadActivity::OnCpu, a, Some(0xa), None),
                'b' => (LoopState::Callback, ThreadActivity::OnCpu, b, Some(0xb), Some(task)),
                's' => (LoopState::Callback, ThreadActivity::Waiting(230), sl, Some(0x5), None),
                _ => (LoopState::Unknown, ThreadActivity::Unknown, idle, None, None),
            };
            let lateness = if state == LoopState::Idle { Some(-0.005) } else { Some(0.001 * i as f32) };
            let loop_frames = if state == LoopState::Idle { 1 } else { 2 };
            rec.samples.push(Sample {
                t,
                loop_index: 0,
                state,
                activity,
                ready: i as u32 % 4,
                lateness,
                stack,
                loop_frames,
                callback,
                task,
                busy_for: None,
                gc: crate::python::gc::GcAt::Unknown,
            });
        }
        rec.ended = 100.0 + s.len() as f64 / rate;
        rec
    }

    #[test]
    fn library_files_and_blamed_frames() {
        assert!(is_library_file("/usr/lib/python3.12/json/decoder.py"));
        assert!(is_library_file("/root/.pyenv/versions/3.8.18/lib/python3.8/asyncio/events.py"));
        assert!(is_library_file("/venv/lib/python3.11/site-packages/pymysql/connections.py"));
        assert!(is_library_file("<frozen importlib._bootstrap>"));
        assert!(!is_library_file("/srv/app/db.py"));
        assert!(!is_library_file("/srv/lib/python3x/app.py"));
        // Blame: stacks innermost first; the last two frames are the loop's own.
        let meta = LoopMeta::test(1);
        let mut rec = Recording::new(100.0, vec![meta], 0.0);
        let json = frame("decode", "/usr/lib/python3.12/json/decoder.py", 1);
        let app = frame("parse_report", "/srv/app.py", 2);
        let pkg = frame("execute", "/venv/lib/python3.12/site-packages/db/cursor.py", 3);
        let genexpr = frame("parse_report.<locals>.<genexpr>", "/srv/app.py", 4);
        let run = frame("Handle._run", "/usr/lib/python3.12/asyncio/events.py", 84);
        let main = frame("<module>", "/srv/main.py", 116);
        let mut sample = |frames: &[&StackFrame]| {
            let owned: Vec<StackFrame> = frames.iter().map(|f| (*f).clone()).collect();
            let stack = rec.intern_stack(&owned);
            Sample {
                t: 0.0,
                loop_index: 0,
                state: LoopState::Callback,
                activity: ThreadActivity::OnCpu,
                ready: 0,
                lateness: None,
                stack,
                loop_frames: 2,
                callback: Some(1),
                task: None,
                busy_for: None,
                gc: crate::python::gc::GcAt::Unknown,
            }
        };
        let s1 = sample(&[&json, &app, &run, &main]);
        let s2 = sample(&[&genexpr, &app, &run, &main]);
        let s3 = sample(&[&json, &pkg, &run, &main]);
        let s4 = sample(&[&json, &run, &main]);
        let s5 = sample(&[&app, &run, &main]);
        let who = |v: &[&Sample]| blame(&rec, v).map(|b| (b.function, b.innermost.function));
        // The application frame under the library one; the generator expression is its own.
        assert_eq!(who(&[&s1, &s2, &s1, &s2]), Some(("parse_report".into(), "decode".into())));
        // No application frame: an installed package's; else the innermost frame.
        assert_eq!(who(&[&s3]), Some(("execute".into(), "decode".into())));
        assert_eq!(who(&[&s4]), Some(("decode".into(), "decode".into())));
        // The program's entry frame below the loop (`<module>`) is never blamed.
        assert_eq!(who(&[&s4, &s4]).unwrap().0, "decode");
        // A frame in under 75 % of the samples is not the blamed one.
        assert_eq!(who(&[&s3, &s5, &s5, &s5]).unwrap().0, "parse_report");
        assert!(blame(&rec, &[]).is_none());
    }

    #[test]
    fn busy_and_select_shares_are_time_weighted() {
        let rec = script(100.0, "....aaaa..");
        let a = analyze(&rec, &Options::default());
        let l = &a.loops[0];
        assert!((l.busy_pct - 40.0).abs() < 1e-9, "{}", l.busy_pct);
        assert!((l.select_pct - 60.0).abs() < 1e-9);
        assert_eq!(l.unknown_pct, 0.0);
        assert_eq!(l.samples, 10);
    }

    #[test]
    fn episodes_need_the_threshold_and_one_callback() {
        // 100 Hz: 'a' x12 is 120 ms (> 100 ms); 'b' x5 is 50 ms (< 100 ms).
        let rec = script(100.0, "..aaaaaaaaaaaa..bbbbb..");
        let a = analyze(&rec, &Options::default());
        let eps = &a.loops[0].episodes;
        assert_eq!(eps.len(), 1);
        let e = &eps[0];
        assert!((e.duration_ms - 120.0).abs() < 1e-6, "{}", e.duration_ms);
        assert_eq!(e.samples, 12);
        assert_eq!(e.function, "app_a");
        assert!(e.on_cpu);
        assert_eq!(e.waiting_in, None);
        // Started half-way between the last idle sample (t=101.01) and the first busy one.
        assert!((e.start - 100.015).abs() < 1e-9);
        assert!(!e.ongoing);
        // At the rate asked: half an interval of doubt at each end.
        assert!((e.duration_error_ms - 10.0).abs() < 1e-6, "{}", e.duration_error_ms);
        // A sampler late by 100 ms just before the episode (starved of CPU): the estimate
        // keeps to one interval, and says it may be 100 ms off at that end.
        let mut rec = script(100.0, "..aaaaaaaaaaaa..");
        for s in &mut rec.samples[..2] {
            s.t -= 0.1;
        }
        let e = &analyze(&rec, &Options::default()).loops[0].episodes[0];
        assert!((e.duration_ms - 125.0).abs() < 1e-6, "{}", e.duration_ms);
        assert!((e.duration_error_ms - 105.0).abs() < 1e-6, "{}", e.duration_error_ms);
        // Two callbacks back to back are two runs, not one long episode.
        let rec = script(100.0, "..aaaaaaaaabbbbbbbbb..");
        let a = analyze(&rec, &Options::default());
        assert!(a.loops[0].episodes.is_empty());
        assert!((a.loops[0].longest_busy_ms - 175.0).abs() < 1e-6, "{}", a.loops[0].longest_busy_ms);
    }

    #[test]
    fn episode_attribution_task_and_syscall() {
        let rec = script(100.0, ".bbbbbbbbbbbbbbb.ssssssssssssssssssss");
        let a = analyze(&rec, &Options { threshold: 0.1, ..Options::default() });
        let eps = &a.loops[0].episodes;
        assert_eq!(eps.len(), 2);
        // The json frames are library frames: the application frame below them is blamed.
        assert_eq!(eps[0].function, "app_b");
        assert_eq!(eps[0].line, 20);
        assert_eq!(eps[0].task.as_deref(), Some("Task-7"));
        assert_eq!(eps[1].function, "sleeper");
        assert!(!eps[1].on_cpu);
        assert_eq!(eps[1].waiting_in.as_deref(), Some("clock_nanosleep"));
        assert!(eps[1].ongoing);
        let top = &a.blocking_frames;
        assert_eq!(top[0].function, "sleeper");
        assert_eq!(top[0].episodes, 1);
        assert_eq!(top[1].function, "app_b");
    }

    #[test]
    fn lag_percentiles_and_ready_trend() {
        let rec = script(100.0, "aaaaaaaaaa");
        let a = analyze(&rec, &Options::default());
        let l = &a.loops[0];
        assert!((l.lag.max_ms - 9.0).abs() < 1e-3);
        assert!((l.lag.p50_ms - 5.0).abs() < 1e-3 || (l.lag.p50_ms - 4.0).abs() < 1e-3);
        // Idle samples have negative lateness (timer ahead): lag 0.
        let rec = script(100.0, "....");
        assert_eq!(analyze(&rec, &Options::default()).loops[0].lag.max_ms, 0.0);
        let mut rec = script(10.0, "..........");
        for (i, s) in rec.samples.iter_mut().enumerate() {
            s.ready = 3 * i as u32;
        }
        let l = &analyze(&rec, &Options::default()).loops[0];
        assert!((l.ready.trend_per_s - 30.0).abs() < 1e-6, "{}", l.ready.trend_per_s);
        assert_eq!(l.ready.max, 27);
        assert_eq!(l.ready.last, 27);
    }

    #[test]
    fn windows_cover_the_recording() {
        let rec = script(10.0, "..........aaaaaaaaaa");
        let l = &analyze(&rec, &Options::default()).loops[0];
        assert_eq!(l.windows.len(), 2);
        assert_eq!(l.windows[0].busy_pct, 0.0);
        assert!((l.windows[1].busy_pct - 100.0).abs() < 1e-9);
        // The episode starts half an interval before its first sample: in the first window.
        assert_eq!(l.windows.iter().map(|w| w.episodes).sum::<u32>(), 1);
        assert_eq!(l.windows.iter().map(|w| w.samples).sum::<u32>(), 20);
    }

    #[test]
    fn busy_now_comes_from_the_last_samples() {
        let rec = script(100.0, "...aaaaa");
        let l = &analyze(&rec, &Options::default()).loops[0];
        assert!((l.busy_now_ms.unwrap() - 45.0).abs() < 1e-6, "{:?}", l.busy_now_ms);
        let rec = script(100.0, "aaa..");
        assert_eq!(analyze(&rec, &Options::default()).loops[0].busy_now_ms, None);
    }

    #[test]
    fn no_share_prints_as_minus_zero() {
        let rec = script(100.0, "aaaa");
        let l = &analyze(&rec, &Options::default()).loops[0];
        assert!(l.select_pct.is_sign_positive() && l.unknown_pct.is_sign_positive(), "{} {}", l.select_pct, l.unknown_pct);
        assert_eq!(format!("{:.1}", l.select_pct), "0.0");
    }

    #[test]
    fn empty_recordings_have_zero_figures() {
        let rec = script(100.0, "");
        let a = analyze(&rec, &Options::default());
        assert_eq!(a.loops[0].samples, 0);
        assert_eq!(a.loops[0].busy_pct, 0.0);
        assert!(a.loops[0].episodes.is_empty());
        assert!(a.blocking_frames.is_empty());
    }

    /// Samples taken while collecting carry the collector's frame on top: blame looks past
    /// it, and a run mostly collecting is blamed on the collector with that frame kept.
    #[test]
    fn gc_samples_are_blamed_on_the_collector_keeping_the_frame_they_interrupted() {
        let mut rec = Recording::new(100.0, Vec::new(), 0.0);
        let app = [frame("run", "/srv/app.py", 197), frame("Handle._run", "/usr/lib/python3.12/asyncio/events.py", 84)];
        let plain = rec.intern_stack(&app);
        let collecting = rec.intern_stack(&crate::python::gc::with_gc_frame(&app));
        let b = blame_counts(&rec, &[((collecting, 1), 8), ((plain, 1), 2)]).unwrap();
        assert_eq!((b.function.as_str(), b.line), ("run", 197));
        let mut share = GcShare::default();
        for at in [GcAt::Idle, GcAt::Idle, GcAt::Unknown].into_iter().chain(std::iter::repeat_n(GcAt::Collecting(Some(2)), 7)) {
            share.add(at);
        }
        share.add(GcAt::Collecting(Some(0)));
        let mut e = Episode {
            loop_index: 0,
            start: 0.0,
            end: 0.1,
            start_s: 0.0,
            duration_ms: 100.0,
            duration_error_ms: 10.0,
            ongoing: false,
            samples: 11,
            function: b.function,
            file: b.file,
            line: b.line,
            innermost: b.innermost,
            task: None,
            on_cpu: true,
            waiting_in: None,
            stack: collecting,
            gc_pct: None,
            gc_generation: None,
            gc_interrupted: None,
        };
        share.apply(&mut e);
        assert_eq!(e.gc_pct, Some(80.0), "8 of the 10 samples read");
        assert_eq!(e.gc_generation, Some(2));
        assert_eq!((e.function.as_str(), e.file.as_str(), e.line), (GC_FUNCTION, "", 0));
        assert_eq!(e.gc_interrupted.as_ref().map(|f| (f.function.as_str(), f.line)), Some(("run", 197)));
        // Under half: the callback keeps the blame.
        let mut few = GcShare::default();
        few.add(GcAt::Collecting(None));
        few.add(GcAt::Idle);
        few.add(GcAt::Idle);
        let mut e2 = Episode { function: "run".into(), gc_interrupted: None, ..e };
        few.apply(&mut e2);
        assert_eq!(e2.function, "run");
        assert!(e2.gc_interrupted.is_none() && e2.gc_generation.is_none());
    }

    /// A target that makes up a new function for every episode (generated code, a lambda per
    /// request) cannot grow the totals without end: past the cap they are summed as one
    /// row, and nothing is lost from the sums.
    #[test]
    fn frame_totals_keep_a_bounded_number_of_frames() {
        let e = |i: usize| Episode {
            loop_index: 0,
            start: i as f64,
            end: i as f64 + 0.1,
            start_s: i as f64,
            duration_ms: 100.0,
            duration_error_ms: 10.0,
            ongoing: false,
            samples: 10,
            function: format!("handler_{i}"),
            file: "/app/gen.py".into(),
            line: 1,
            innermost: FrameInfo { function: "x".into(), file: "x".into(), line: 1 },
            task: None,
            on_cpu: i % 2 == 0,
            waiting_in: (i % 2 == 1).then(|| "read".into()),
            stack: 0,
            gc_pct: None,
            gc_generation: None,
            gc_interrupted: None,
        };
        let extra = 7;
        let mut totals = FrameTotals::default();
        for i in 0..MAX_TOTALLED_FRAMES + extra {
            totals.add(&e(i));
        }
        // An old frame still adds to its own row.
        totals.add(&e(0));
        let frames = totals.frames();
        assert_eq!(frames.len(), MAX_TOTALLED_FRAMES + 1);
        let other = frames.iter().find(|f| f.function == OTHER_FRAMES).unwrap();
        assert_eq!(other.episodes, extra as u32);
        assert_eq!(frames.iter().find(|f| f.function == "handler_0").unwrap().episodes, 2);
        let all: u32 = frames.iter().map(|f| f.episodes).sum();
        assert_eq!(all as usize, MAX_TOTALLED_FRAMES + extra + 1);
        // Merged into totals already at the cap: the same.
        let mut again = totals.clone();
        again.merge(&totals);
        assert_eq!(again.frames().len(), MAX_TOTALLED_FRAMES + 1);
        assert_eq!(again.frames().iter().map(|f| f.episodes).sum::<u32>(), 2 * all);
    }
}
