//! Pending tasks grouped by what leaks: per loop, the coroutine each pending task runs (where
//! it is suspended) and what it waits on (a semaphore, a lock, a queue, a future, another
//! task...; the object by address when the whole group waits on one).
//!
//! Grouping reads about 30 words per task, far more than counting (one header), so a pass
//! examines at most [`MAX_EXAMINED`] pending tasks of a loop, spread evenly over the
//! registry, for at most [`PASS_TIME`] (then at least [`MIN_EXAMINED`]), in an order whose
//! every prefix is spread evenly too, and scales the counts up, saying so; passes come at
//! most every [`EVERY`] seconds and take at most [`BUDGET`] of the time.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::asyncio::callback;
use crate::asyncio::tasks::{self, TaskSet, TaskState, WaitKind};
use crate::process::memory::Memory;
use crate::python::frames::StackReader;
use crate::python::reader::ObjectReader;

/// Most pending tasks of a loop examined in one pass (a bigger loop is sampled).
pub const MAX_EXAMINED: usize = 1_000;
/// Longest a pass of `record`/`top` reads one loop's tasks (seconds; the sampler waits
/// meanwhile), once it examined [`MIN_EXAMINED`].
pub const PASS_TIME: f64 = 0.05;
/// Fewest tasks a pass examines (when there are that many), whatever the time.
pub const MIN_EXAMINED: usize = 100;
/// Shortest interval between two passes (seconds).
pub const EVERY: f64 = 5.0;
/// Share of wall time grouping may take.
pub const BUDGET: f64 = 0.02;
/// Groups kept per pass (largest first; the rest are summed in `other_tasks`).
pub const MAX_GROUPS: usize = 10;
/// Passes a recording holds (older ones are let go of, the oldest half at a time): at one
/// pass every 5 s, the last 21–42 minutes, at most about 1.5 MB (10 groups of ~300 bytes per
/// pass). A capture file keeps every pass.
pub const MAX_PASSES: usize = 512;
/// Distinct objects tracked per group (beyond, "many").
const MAX_OBJECTS: usize = 64;

/// Pending tasks of one coroutine waiting on one kind of thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskGroup {
    /// The tasks' coroutine (qualname), and where it is suspended.
    pub function: String,
    pub file: String,
    pub line: i32,
    pub waits_on: WaitKind,
    /// The asyncio function they wait in (`Semaphore.acquire`), when known.
    pub via: Option<String>,
    /// Tasks of this group among those examined.
    pub examined: usize,
    /// Tasks of this group among all the loop's pending ones: `examined` × pending / examined
    /// tasks of the pass when it sampled, else equal.
    pub estimated: usize,
    /// Distinct objects waited on among those examined (0: none has an identity; counted up
    /// to 64).
    pub objects: usize,
    /// The one object every examined task of the group waits on, by address (`0x...`).
    pub object: Option<String>,
    /// Its type (`Semaphore`, `Queue`, `_asyncio.Future`, a subclass's name).
    pub object_type: Option<String>,
    /// When that object is a task: its name.
    pub object_name: Option<String>,
}

/// One grouping pass over a loop's pending tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskGroupSample {
    pub t: f64,
    pub loop_index: u16,
    /// The loop's pending tasks at the pass.
    pub pending: usize,
    /// How many were examined (all of them when not `sampled`).
    pub examined: usize,
    /// Only a sample was examined: `estimated` counts are estimates.
    pub sampled: bool,
    /// Examined tasks that could not be read (finished or changed while read).
    pub unreadable: usize,
    /// Largest first, at most [`MAX_GROUPS`].
    pub groups: Vec<TaskGroup>,
    /// Examined tasks in groups not listed.
    pub other_tasks: usize,
    /// How long the pass took (ms).
    pub cost_ms: f64,
}

/// The passes of a recording, bounded: the newest [`MAX_PASSES`], with the count of all
/// passes ever pushed (a capture file writes from there).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskGroupLog {
    pub passes: Vec<TaskGroupSample>,
    /// Passes pushed in all (held or let go of).
    pub total: usize,
}

impl TaskGroupLog {
    pub fn push(&mut self, s: TaskGroupSample) {
        if self.passes.len() >= MAX_PASSES {
            self.passes.drain(..MAX_PASSES / 2);
        }
        self.passes.push(s);
        self.total += 1;
    }

    /// Passes pushed after the first `written` ever pushed (those still held).
    pub fn since(&self, written: usize) -> &[TaskGroupSample] {
        let held_from = self.total - self.passes.len();
        &self.passes[written.saturating_sub(held_from).min(self.passes.len())..]
    }

    /// The newest pass of a loop.
    pub fn latest(&self, loop_index: u16) -> Option<&TaskGroupSample> {
        self.passes.iter().rev().find(|p| p.loop_index == loop_index)
    }

    /// Move the passes out (a live view's delta); the total stays.
    pub fn take(&mut self) -> Vec<TaskGroupSample> {
        std::mem::take(&mut self.passes)
    }

    pub fn extend(&mut self, passes: Vec<TaskGroupSample>) {
        for p in passes {
            self.push(p);
        }
    }

    pub fn clear(&mut self) {
        self.passes.clear();
    }
}

/// The pending tasks of `event_loop` in `set` to examine: all, or [`MAX_EXAMINED`] of them
/// spread evenly (every k-th, from an offset that moves each pass).
pub fn pick(set: &TaskSet, event_loop: u64, running: Option<u64>, pass: usize) -> (Vec<u64>, usize) {
    let pending: Vec<u64> =
        set.of_loop(event_loop).filter(|(t, _, s)| *s == TaskState::Pending && Some(*t) != running).map(|(t, _, _)| *t).collect();
    let n = pending.len();
    if n <= MAX_EXAMINED {
        return (pending, n);
    }
    let step = n as f64 / MAX_EXAMINED as f64;
    let offset = (pass % 7) as f64 / 7.0 * step;
    let picked = (0..MAX_EXAMINED).map(|i| pending[((offset + i as f64 * step) as usize).min(n - 1)]).collect();
    (picked, n)
}

/// An order of `0..n` whose every prefix is spread over the whole range (`i × g mod n`, `g`
/// coprime to `n`, near `n / φ`).
fn spread(n: usize) -> impl Iterator<Item = usize> {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let mut g = ((n as f64 * 0.618_034) as usize).max(1);
    while n > 1 && gcd(g, n) != 1 {
        g += 1;
    }
    (0..n).map(move |i| (i * g) % n.max(1))
}

/// Group the given pending tasks (picked among the loop's `pending`), reading for at most
/// `time` seconds once [`MIN_EXAMINED`] are read.
pub fn group<M: Memory>(
    r: &ObjectReader<M>,
    stacks: &mut StackReader,
    tasks: &[u64],
    pending: usize,
    t: f64,
    loop_index: u16,
    time: f64,
) -> TaskGroupSample {
    let started = std::time::Instant::now();
    type Key = (String, String, i32, WaitKind, Option<String>);
    // Tasks, distinct objects, and whether a member had no object.
    type Members = (usize, HashSet<u64>, bool);
    let mut groups: HashMap<Key, Members> = HashMap::new();
    let mut unreadable = 0;
    let mut examined = 0;
    for i in spread(tasks.len()) {
        if examined >= MIN_EXAMINED && started.elapsed().as_secs_f64() >= time {
            break;
        }
        examined += 1;
        let task = &tasks[i];
        let Ok(site) = tasks::wait_site(r, stacks, *task) else {
            unreadable += 1;
            continue;
        };
        let (function, file, line) = match &site.coroutine {
            Some(f) => (f.function.to_string(), f.file.to_string(), f.line),
            None => ("?".to_string(), String::new(), 0),
        };
        let g = groups.entry((function, file, line, site.kind, site.via)).or_insert_with(|| (0, HashSet::new(), false));
        g.0 += 1;
        match site.object {
            Some(o) if g.1.len() < MAX_OBJECTS || g.1.contains(&o) => {
                g.1.insert(o);
            }
            Some(_) => {}
            // A member without an identity: the group is not "all on one object".
            None => g.2 = true,
        }
    }
    // Unreadable tasks mostly finished while read: they count as gone, not as the others.
    let scale = if examined == 0 { 0.0 } else { pending as f64 / examined as f64 };
    let mut list: Vec<(Key, Members)> = groups.into_iter().collect();
    list.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
    let other_tasks = list.iter().skip(MAX_GROUPS).map(|(_, v)| v.0).sum();
    let groups = list
        .into_iter()
        .take(MAX_GROUPS)
        .map(|((function, file, line, kind, via), (n, objects, anonymous))| {
            let one = (objects.len() == 1 && !anonymous).then(|| *objects.iter().next().expect("one"));
            let object_type = one.and_then(|o| r.type_name(o).ok());
            let object_name = one.filter(|_| kind == WaitKind::Task).and_then(|o| callback::task_name(r, o).ok());
            TaskGroup {
                function,
                file,
                line,
                waits_on: kind,
                via,
                examined: n,
                estimated: (n as f64 * scale).round() as usize,
                objects: objects.len(),
                object: one.map(|o| format!("{o:#x}")),
                object_type,
                object_name,
            }
        })
        .collect();
    TaskGroupSample {
        t,
        loop_index,
        pending,
        examined,
        sampled: examined < pending,
        unreadable,
        groups,
        other_tasks,
        cost_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

/// A pass as reports show it (`dump`'s tasks, `record`'s loops): largest groups first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskGroupsReport {
    /// When the pass was taken, seconds from the recording's start (`record`; absent in `dump`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_s: Option<f64>,
    pub pending: usize,
    pub examined: usize,
    pub sampled: bool,
    pub unreadable: usize,
    pub groups: Vec<TaskGroup>,
    pub other_tasks: usize,
    pub cost_ms: f64,
}

impl TaskGroupsReport {
    pub fn of(s: &TaskGroupSample, since: Option<f64>) -> Self {
        TaskGroupsReport {
            at_s: since.map(|t0| s.t - t0),
            pending: s.pending,
            examined: s.examined,
            sampled: s.sampled,
            unreadable: s.unreadable,
            groups: s.groups.clone(),
            other_tasks: s.other_tasks,
            cost_ms: s.cost_ms,
        }
    }
}

/// When to group while sampling: at most every [`EVERY`] seconds, and less often when a pass
/// takes longer, so that grouping never costs more than [`BUDGET`] of the time.
#[derive(Debug, Default)]
pub struct TaskGrouper {
    next_at: f64,
    passes: usize,
    /// Boxed: a sampler holds the grouper inline, and the reader's caches are large.
    stacks: Box<StackReader>,
}

impl TaskGrouper {
    pub fn due(&self, now: f64) -> bool {
        now >= self.next_at
    }

    /// Group the pending tasks of each loop (`(recording index, loop address)`) of `set`.
    pub fn pass<M: Memory>(&mut self, r: &ObjectReader<M>, set: &TaskSet, loops: &[(u16, u64)], now: f64) -> Vec<TaskGroupSample> {
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        for (index, addr) in loops {
            let (tasks, pending) = pick(set, *addr, None, self.passes);
            out.push(group(r, &mut self.stacks, &tasks, pending, now, *index, PASS_TIME));
        }
        self.passes += 1;
        let cost = started.elapsed().as_secs_f64();
        self.next_at = now + EVERY.max(cost / BUDGET);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(t: f64) -> TaskGroupSample {
        TaskGroupSample {
            t,
            loop_index: 0,
            pending: 1,
            examined: 1,
            sampled: false,
            unreadable: 0,
            groups: vec![],
            other_tasks: 0,
            cost_ms: 0.0,
        }
    }

    #[test]
    fn the_log_stays_bounded_and_knows_what_was_written() {
        let mut log = TaskGroupLog::default();
        for i in 0..MAX_PASSES + 10 {
            log.push(pass(i as f64));
        }
        assert!(log.passes.len() <= MAX_PASSES);
        assert_eq!(log.total, MAX_PASSES + 10);
        assert_eq!(log.since(log.total - 3).len(), 3);
        assert_eq!(log.since(log.total - 3)[0].t, (MAX_PASSES + 7) as f64);
        // Written before what is held: everything held.
        assert_eq!(log.since(0).len(), log.passes.len());
        assert_eq!(log.since(log.total).len(), 0);
        let moved = log.take();
        assert!(!moved.is_empty() && log.passes.is_empty());
        assert_eq!(log.since(log.total).len(), 0);
    }

    #[test]
    fn every_prefix_of_the_order_is_spread() {
        for n in [0, 1, 2, 10, 999, 1000] {
            let order: Vec<usize> = spread(n).collect();
            let unique: HashSet<usize> = order.iter().copied().collect();
            assert_eq!(unique.len(), n, "a permutation of {n}");
        }
        // The first tenth of 1000 touches every tenth of the range.
        let first: HashSet<usize> = spread(1000).take(100).map(|i| i / 100).collect();
        assert_eq!(first.len(), 10);
    }

    #[test]
    fn a_big_loop_is_sampled_evenly() {
        let set = TaskSet { tasks: (0..10_000u64).map(|i| (0x1000 + 8 * i, 0x10, TaskState::Pending)).collect(), truncated: false };
        let (picked, pending) = pick(&set, 0x10, None, 3);
        assert_eq!(pending, 10_000);
        assert_eq!(picked.len(), MAX_EXAMINED);
        let unique: HashSet<u64> = picked.iter().copied().collect();
        assert_eq!(unique.len(), MAX_EXAMINED);
        let (small, n) = pick(&TaskSet { tasks: set.tasks[..5].to_vec(), truncated: false }, 0x10, Some(0x1000), 0);
        assert_eq!((small.len(), n), (4, 4), "the running task is not grouped");
    }
}
