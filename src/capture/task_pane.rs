//! The task pane of a live view: about once a second, the loop's pending tasks, longest
//! pending first, with their names and where each waits. Read from the target on the
//! sampling side (a bounded number of names per refresh); the TUI only draws it.

use std::collections::HashMap;

use crate::asyncio::callback;
use crate::asyncio::tasks::{self, TaskState};
use crate::capture::recording::Recording;
use crate::capture::sampler::Sampler;
use crate::capture::task_counter::TaskCounter;
use crate::python::frames::{StackFrame, StackReader};

/// One task in the task pane.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub name: String,
    /// How long loopspy has seen it pending (a lower bound of how long it has waited).
    pub pending_for_s: f64,
    /// The innermost coroutine it is suspended in.
    pub at: String,
    pub running: bool,
}

/// What the task pane shows: read from the target by the sampling side, drawn by the TUI
/// (which escapes the names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPane {
    pub counts: crate::asyncio::tasks::TaskCounts,
    /// Pending tasks matching the filter, longest pending first, at most what fits.
    pub rows: Vec<TaskRow>,
    /// Pending tasks matching the filter.
    pub matching: usize,
    /// When the count was taken (seconds ago).
    pub age_s: f64,
    /// The loop's pending tasks by coroutine and what they wait on, at the last grouping pass.
    pub groups: Option<crate::capture::task_groups::TaskGroupSample>,
}

/// Task names are read once per task, at most this many new ones per refresh.
const NAMES_PER_REFRESH: usize = 5_000;
/// Rows described in the task pane.
const TASK_ROWS: usize = 40;

/// What the task pane needs across refreshes: when each task was first seen pending, and the
/// names already read.
#[derive(Default)]
pub struct TaskTracker {
    pub counter: TaskCounter,
    first_seen: HashMap<u64, f64>,
    names: HashMap<u64, String>,
    stacks: StackReader,
    pub pane: Option<TaskPane>,
    counted_at: f64,
    groups: Option<crate::capture::task_groups::TaskGroupSample>,
}

impl TaskTracker {
    /// Count when due; refresh the pane for the recording's loop `focus` (else the first one
    /// sampled) with the user's filter.
    pub fn refresh(&mut self, sampler: &Sampler, rec: &mut Recording, filter: &str, focus: u16) {
        let now = sampler.now();
        if let Some(p) = self.pane.as_mut() {
            p.age_s = now - self.counted_at;
        }
        if !self.counter.due(now) {
            return;
        }
        let loops = sampler.loop_addresses();
        if self.counter.count(&sampler.target, &loops, now, rec).is_err() {
            return;
        }
        self.counted_at = now;
        let Some(set) = self.counter.last.as_ref() else { return };
        let Some(&(meta, loop_addr)) = loops.iter().find(|(m, _)| *m == focus).or(loops.first()) else { return };
        if let Some(g) = rec.task_groups.latest(meta) {
            self.groups = Some(g.clone());
        }
        let groups = self.groups.clone().filter(|g| g.loop_index == meta);
        let r = &sampler.target.reader;
        let running = sampler.current_task(meta);
        let pending: Vec<u64> = set.of_loop(loop_addr).filter(|(_, _, s)| *s == TaskState::Pending).map(|(t, _, _)| *t).collect();
        let live: std::collections::HashSet<u64> = pending.iter().copied().collect();
        self.first_seen.retain(|t, _| live.contains(t));
        self.names.retain(|t, _| live.contains(t));
        for t in &pending {
            self.first_seen.entry(*t).or_insert(now);
        }
        let mut order = pending;
        order.sort_by(|a, b| self.first_seen[a].total_cmp(&self.first_seen[b]));
        // Names: the rows need them; a filter needs them all (read a bounded number a time).
        let want = if filter.is_empty() { TASK_ROWS } else { order.len() };
        let mut budget = NAMES_PER_REFRESH;
        for t in order.iter().take(want) {
            if budget == 0 {
                break;
            }
            if !self.names.contains_key(t) {
                budget -= 1;
                if let Ok(n) = callback::task_name(r, *t) {
                    self.names.insert(*t, n);
                }
            }
        }
        let matching: Vec<u64> =
            order.into_iter().filter(|t| filter.is_empty() || self.names.get(t).is_some_and(|n| n.contains(filter))).collect();
        let mut rows = Vec::new();
        for t in matching.iter().take(TASK_ROWS) {
            let at = callback::task_coro(r, *t)
                .and_then(|coro| tasks::coroutine_chain(r, &mut self.stacks, coro))
                .ok()
                .and_then(|(chain, _)| chain.first().map(frame_text))
                .unwrap_or_default();
            rows.push(TaskRow {
                name: self.names.get(t).cloned().unwrap_or_else(|| "?".into()),
                pending_for_s: now - self.first_seen[t],
                at,
                running: Some(*t) == running,
            });
        }
        self.pane = Some(TaskPane { counts: set.counts(loop_addr), rows, matching: matching.len(), age_s: 0.0, groups });
    }
}

/// `function (file:line)`: where a task waits (a string from the target, escaped where drawn).
fn frame_text(f: &StackFrame) -> String {
    format!("{} ({}:{})", f.function, f.file, f.line)
}
