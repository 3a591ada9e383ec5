//! Counting tasks while sampling: about once a second, and less often when counting takes
//! longer, so that it never costs more than [`BUDGET`] of the time (a process with 100,000
//! tasks on 3.14+, whose task lists must be walked node by node, is counted every few
//! seconds instead of every second).

use crate::asyncio::tasks::{self, TaskSet};
use crate::capture::recording::{Recording, TaskCountSample};
use crate::process::procfs;
use crate::python::interp;
use crate::python::reader;
use crate::python::target::Target;

/// Share of wall time task counting may take.
pub const BUDGET: f64 = 0.02;
/// Shortest interval between two counts (seconds).
pub const EVERY: f64 = 1.0;

#[derive(Debug, Default)]
pub struct TaskCounter {
    next_at: f64,
    /// The last complete count.
    pub last: Option<TaskSet>,
    /// How long the last count took (seconds).
    pub last_cost: f64,
}

impl TaskCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn due(&self, now: f64) -> bool {
        now >= self.next_at
    }

    /// Count the tasks of every loop now; record per-loop counts into `rec` (the loops are
    /// `(recording index, loop address)`). A failed count (the target changing under us) is
    /// skipped; the next one comes at the usual time.
    pub fn count(&mut self, target: &Target, loops: &[(u16, u64)], now: f64, rec: &mut Recording) -> reader::Result<()> {
        let started = std::time::Instant::now();
        let result = (|| {
            let tids = procfs::task_ids(target.pid).unwrap_or_default();
            let threads = interp::threads(&target.reader, target.interp, &tids)?;
            tasks::enumerate(&target.reader, target.interp, &threads)
        })();
        self.last_cost = started.elapsed().as_secs_f64();
        self.next_at = now + EVERY.max(self.last_cost / BUDGET);
        let set = result?;
        for (index, addr) in loops {
            rec.task_counts.push(TaskCountSample { t: now, loop_index: *index, counts: set.counts(*addr), truncated: set.truncated });
        }
        self.last = Some(set);
        Ok(())
    }
}
