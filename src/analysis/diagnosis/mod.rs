//! Diagnoses: *why* a loop is slow and *what to do*, each with the numbers behind it.
//!
//! A diagnosis is computed from figures loopspy already has (a loop's summary, its episodes,
//! its task counts) and from what the capture layer reads for it (the default executor, the
//! groups of pending tasks, the interpreter's GC state). Each kind lives in its own module
//! with one function that returns `Some(Diagnosis)` only when the evidence is there: a
//! healthy loop gets none. `for_loop` runs them all, most urgent first.

pub mod executor;
pub mod task_leak;

use serde::Serialize;

pub mod gc;

use crate::analysis::metrics::{Episode, LoopSummary};
use crate::capture::recording::Recording;
use crate::capture::snapshot::LoopView;
use crate::python::frames::StackFrame;

pub mod cpu_bound;
pub mod overload;
pub mod sync_io;

/// What kind of trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A callback waited in a system call (a socket, a file, a DB driver, DNS) on the loop.
    SyncIo,
    /// A callback computed for long on the loop (json, regex, a comprehension).
    CpuBound,
    /// The loop's default executor has every worker busy and work queued.
    ExecutorStarvation,
    /// Pending tasks keep growing.
    TaskLeak,
    /// The loop stopped while the interpreter collected garbage.
    GcPauses,
    /// The ready queue grows with no single callback to blame.
    Overload,
}

/// One fact behind a diagnosis, as shown: `what` is a short label, `value` the number with
/// its unit (strings from the target in it are not yet escaped: the sink escapes them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub what: String,
    pub value: String,
}

/// A diagnosis of one loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub kind: Kind,
    /// Which loop of the recording (reports show it beside the loop).
    #[serde(skip)]
    pub loop_index: u16,
    /// One line: what is wrong, with the main figure.
    pub title: String,
    /// The numbers that show it.
    pub evidence: Vec<Evidence>,
    /// One concrete next step.
    pub next_step: String,
}

impl Evidence {
    pub fn new(what: impl Into<String>, value: impl Into<String>) -> Self {
        Evidence { what: what.into(), value: value.into() }
    }
}

/// What a diagnosis of a recorded loop may look at: the loop's figures and the recording
/// they came from (its stacks, names and whatever the capture read beside the samples).
pub struct Inputs<'a> {
    pub summary: &'a LoopSummary,
    pub rec: &'a Recording,
    /// How long the loop was recorded (seconds): from its first look to its last, failed
    /// looks too, and at least the time its samples weigh (`summary.wall_s`, which leaves
    /// out the gaps of a sampler that fell behind).
    pub recorded_s: f64,
}

/// A diagnosis of one kind: `Some` only when the evidence is there.
pub type Producer = fn(&Inputs) -> Option<Diagnosis>;

/// Every kind, in the order they are shown (most urgent first).
const PRODUCERS: &[Producer] =
    &[sync_io::diagnose, cpu_bound::diagnose, gc::diagnose, executor::diagnose, task_leak::diagnose, overload::diagnose];

/// Every diagnosis of one recorded loop, most urgent first.
pub fn for_loop(summary: &LoopSummary, rec: &Recording) -> Vec<Diagnosis> {
    let span = rec.loop_spans().get(summary.loop_index as usize).copied().unwrap_or_default();
    diagnose_loop(summary, rec, rec.lived(summary.loop_index as usize, &span))
}

/// Every diagnosis of every loop (`summaries` of `rec`), loop by loop, most urgent first.
pub fn for_loops(summaries: &[LoopSummary], rec: &Recording) -> Vec<Diagnosis> {
    let spans = rec.loop_spans();
    summaries
        .iter()
        .flat_map(|s| {
            let lived = spans.get(s.loop_index as usize).map_or(0.0, |span| rec.lived(s.loop_index as usize, span));
            diagnose_loop(s, rec, lived)
        })
        .collect()
}

fn diagnose_loop(summary: &LoopSummary, rec: &Recording, lived: f64) -> Vec<Diagnosis> {
    let inputs = Inputs { summary, rec, recorded_s: lived.max(summary.wall_s) };
    let mut found: Vec<Diagnosis> = PRODUCERS.iter().filter_map(|p| p(&inputs)).collect();
    // A long run lists only some of its episodes (record: the longest; top: the last): the
    // diagnoses of episodes stand on those, and say so.
    if summary.episodes_omitted > 0 {
        let all = summary.episodes.len() as u64 + summary.episodes_omitted;
        for d in found.iter_mut().filter(|d| matches!(d.kind, Kind::SyncIo | Kind::CpuBound | Kind::GcPauses)) {
            d.evidence.push(Evidence::new(
                "counted",
                format!(
                    "{} listed of {all} episodes: the other {} (shorter or older) are in the blocking frames, not in these figures",
                    summary.episodes.len(),
                    summary.episodes_omitted
                ),
            ));
        }
    }
    found
}

/// What one look at a loop (`dump`) can show: the loop itself as read. A kind that needs
/// more (the default executor, the GC state) adds an optional field here, `None` in
/// [`SnapshotInputs::new`], so callers that do not read it need no change:
/// `SnapshotInputs { executor: Some(&e), ..SnapshotInputs::new(view) }`.
pub struct SnapshotInputs<'a> {
    pub view: &'a LoopView,
    /// A callback running at least this long (seconds) blocks the loop.
    pub threshold: f64,
}

impl<'a> SnapshotInputs<'a> {
    pub fn new(view: &'a LoopView) -> Self {
        SnapshotInputs { view, threshold: crate::analysis::metrics::DEFAULT_THRESHOLD }
    }
}

/// A diagnosis of one look: `Some` only when that look shows it.
pub type SnapshotProducer = fn(&SnapshotInputs) -> Option<Diagnosis>;

/// Every kind one look can show, most urgent first.
const SNAPSHOT_PRODUCERS: &[SnapshotProducer] = &[sync_io::now, cpu_bound::now, executor_now];

/// The default executor saturated at the moment of the look.
fn executor_now(i: &SnapshotInputs) -> Option<Diagnosis> {
    let x = i.view.executor.as_ref()?;
    let pending = i.view.tasks.as_ref().map(|t| t.counts.pending);
    executor::diagnose_snapshot(x, pending, 0)
}

/// Every diagnosis one look at a loop supports, most urgent first.
pub fn for_snapshot(inputs: &SnapshotInputs) -> Vec<Diagnosis> {
    SNAPSHOT_PRODUCERS.iter().filter_map(|p| p(inputs)).collect()
}

/// How long the loop has been in the callback it runs now, as far as one look can tell:
/// uvloop keeps when the iteration started; on asyncio's loops, a live timer still in the
/// heap that is overdue became due after the iteration took its due timers, so the
/// iteration has run at least that long (a lower bound). `None` when not in a callback or
/// when the look cannot tell.
pub fn busy_now_ms(view: &LoopView) -> Option<f64> {
    if view.state != crate::asyncio::loopstate::LoopState::Callback {
        return None;
    }
    if let Some(b) = view.busy_for {
        return Some(b * 1e3);
    }
    let late = view.timer_lateness().filter(|_| view.figures.timers_known)?;
    (late > 0.0).then_some(late * 1e3)
}

/// A diagnosis fires for a group of episodes (blocked time in one kind of trouble) when its
/// blocked time is at least this share of the loop's recorded time, ...
pub const MIN_BLOCKED_PCT: f64 = 2.0;
/// ... or when it has at least this many episodes, ...
pub const MIN_EPISODES: usize = 3;
/// ... or when one of its episodes lasted at least this long (milliseconds).
pub const LONG_EPISODE_MS: f64 = 1000.0;

/// Whether episodes summing to `blocked_ms`, `count` of them, the longest `longest_ms`, over
/// a loop recorded for `wall_s` seconds, are enough to diagnose (see [`MIN_BLOCKED_PCT`]).
pub fn material(blocked_ms: f64, count: usize, longest_ms: f64, wall_s: f64) -> bool {
    count > 0
        && (count >= MIN_EPISODES
            || longest_ms >= LONG_EPISODE_MS
            || (wall_s > 0.0 && blocked_ms / (wall_s * 1e3) * 100.0 >= MIN_BLOCKED_PCT))
}

/// The frames of an episode's stack that the callback ran (innermost first), up to and
/// including the frame it is blamed on: the callers below it (the loop, the program's
/// entry) are left out.
pub fn episode_frames<'a>(rec: &'a Recording, e: &Episode) -> Vec<&'a StackFrame> {
    if rec.stacks.len() <= e.stack as usize {
        return Vec::new();
    }
    let all: Vec<&StackFrame> = rec.stack(e.stack).collect();
    match all.iter().position(|f| *f.function == *e.function && *f.file == *e.file) {
        Some(i) => all[..=i].to_vec(),
        None => all,
    }
}

pub use crate::base::units::ms_text;

/// `function (file:line)`.
pub fn frame_text(function: &str, file: &str, line: i32) -> String {
    format!("{function} ({file}:{line})")
}

/// Episodes of one group (a syscall family and module, a kind of computation), summed.
#[derive(Debug, Clone, Default)]
pub struct Group<'a> {
    pub episodes: Vec<&'a Episode>,
    pub blocked_ms: f64,
    pub longest_ms: f64,
}

impl<'a> Group<'a> {
    pub fn add(&mut self, e: &'a Episode) {
        self.episodes.push(e);
        self.blocked_ms += e.duration_ms;
        self.longest_ms = self.longest_ms.max(e.duration_ms);
    }

    /// The longest episode.
    pub fn longest(&self) -> Option<&'a Episode> {
        self.episodes.iter().copied().max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))
    }

    /// The frame blamed most (by blocked time), as `function (file:line)`, and its name.
    pub fn blamed(&self) -> Option<(String, String)> {
        let mut by: Vec<((&str, &str, i32), f64)> = Vec::new();
        for e in &self.episodes {
            let key = (e.function.as_str(), e.file.as_str(), e.line);
            match by.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ms)) => *ms += e.duration_ms,
                None => by.push((key, e.duration_ms)),
            }
        }
        let ((function, file, line), _) = by.into_iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
        Some((frame_text(function, file, line), function.to_string()))
    }
}

/// One group of a [`Grouping`]: its key, what the key stands for, its episodes.
pub type Keyed<'a, K, T> = (K, T, Group<'a>);

/// Episodes grouped by a key (with what the key stands for, `T`), and all of them summed.
pub struct Grouping<'a, K, T> {
    all: Group<'a>,
    groups: Vec<Keyed<'a, K, T>>,
}

impl<'a, K: PartialEq, T> Default for Grouping<'a, K, T> {
    fn default() -> Self {
        Grouping { all: Group::default(), groups: Vec::new() }
    }
}

impl<'a, K: PartialEq, T> Grouping<'a, K, T> {
    /// Add `e` to the group of `key` (made with `tag` when it is the first of its key).
    pub fn add(&mut self, key: K, tag: T, e: &'a Episode) {
        self.all.add(e);
        match self.groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, g)) => g.add(e),
            None => {
                let mut g = Group::default();
                g.add(e);
                self.groups.push((key, tag, g));
            }
        }
    }

    /// The groups, the most blocked time first, when all of them together are [`material`]
    /// over `wall_s` seconds recorded (never empty then).
    pub fn material(self, wall_s: f64) -> Option<(Group<'a>, Vec<Keyed<'a, K, T>>)> {
        let Grouping { all, mut groups } = self;
        if !material(all.blocked_ms, all.episodes.len(), all.longest_ms, wall_s) {
            return None;
        }
        groups.sort_by(|a, b| b.2.blocked_ms.total_cmp(&a.2.blocked_ms));
        Some((all, groups))
    }
}

/// The evidence every diagnosis of episodes shows: how many, blocked time and its share,
/// the longest.
pub fn episode_evidence(g: &Group, wall_s: f64) -> Vec<Evidence> {
    let share =
        if wall_s > 0.0 { format!(" ({:.1} % of {:.1} s recorded)", g.blocked_ms / (wall_s * 1e3) * 100.0, wall_s) } else { String::new() };
    let mut out = vec![
        Evidence::new("episodes", g.episodes.len().to_string()),
        Evidence::new("blocked", format!("{}{share}", ms_text(g.blocked_ms))),
        Evidence::new("longest", ms_text(g.longest_ms)),
    ];
    if let Some(e) = g.longest() {
        out.push(Evidence::new("longest at", format!("{:.1} s into the recording", e.start_s)));
    }
    out
}

/// The callback's frames of one look (innermost first), without the loop's own.
pub fn view_frames(view: &LoopView) -> Vec<&StackFrame> {
    let keep = view.stack.len().saturating_sub(view.loop_frames);
    view.stack[..keep].iter().collect()
}

/// The frame one look blames: the deepest application frame of the callback, else its
/// innermost frame.
pub fn view_blamed(frames: &[&StackFrame]) -> Option<usize> {
    frames.iter().position(|f| !crate::python::frames::is_library_file(&f.file)).or(if frames.is_empty() { None } else { Some(0) })
}

/// A function name without its class or enclosing function (`Client.fetch` → `fetch`).
pub fn short_name(function: &str) -> &str {
    function.rsplit('.').next().unwrap_or(function)
}
