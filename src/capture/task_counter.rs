//! Counting tasks while sampling: about once a second, and less often when counting takes
//! longer, so that it never costs more than [`BUDGET`] of the time (a process with 100,000
//! tasks on 3.14+, whose task lists must be walked node by node, is counted every few
//! seconds instead of every second).
//!
//! Each loop's default executor is read at the same time (within the same budget): its limit,
//! its workers by name with what each runs, and the work queued.

use crate::asyncio::executor::{ExecutorReader, ExecutorView};
use crate::asyncio::tasks::{self, TaskSet};
use crate::capture::recording::{ExecutorSample, Recording, TaskCountSample, WorkerSample};
use crate::process::procfs;
use crate::python::frames::StackReader;
use crate::python::interp;
use crate::python::interp::PyThread;
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
    executors: ExecutorReader,
    /// The workers' stacks (boxed: the counter sits beside samplers in enums).
    stacks: Box<StackReader>,
    /// Counts taken.
    counted: u64,
    /// Groups the pending tasks every few seconds (`capture::task_groups`).
    pub groups: crate::capture::task_groups::TaskGrouper,
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
            self.read_executors(target, &threads, loops, now, rec);
            tasks::enumerate(&target.reader, target.interp, &threads)
        })();
        self.last_cost = started.elapsed().as_secs_f64();
        // The first count also fills the caches (types, code objects): it does not set the pace.
        let first = self.counted == 0;
        self.counted += 1;
        self.next_at = now + if first { EVERY } else { EVERY.max(self.last_cost / BUDGET) };
        let set = result?;
        for (index, addr) in loops {
            rec.task_counts.push(TaskCountSample { t: now, loop_index: *index, counts: set.counts(*addr), truncated: set.truncated });
        }
        if self.groups.due(now) {
            for pass in self.groups.pass(&target.reader, &set, loops, now) {
                rec.task_groups.push(pass);
            }
        }
        self.last = Some(set);
        Ok(())
    }

    /// Read the default executor of every loop that has one into `rec`. A read that fails
    /// (the pool changing under us) is tried once more, then skipped for this second.
    fn read_executors(&mut self, target: &Target, threads: &[PyThread], loops: &[(u16, u64)], now: f64, rec: &mut Recording) {
        let r = &target.reader;
        for &(index, addr) in loops {
            let Some(kind) = rec.loops.get(index as usize).map(|m| m.loop_kind) else { continue };
            let mut read = || -> crate::python::reader::Result<Option<ExecutorView>> {
                match self.executors.default_executor(r, kind, addr)? {
                    Some(e) => Ok(Some(self.executors.read(r, e, threads, &mut self.stacks)?)),
                    None => Ok(None),
                }
            };
            let view = match read() {
                Ok(v) => v,
                Err(_) => read().ok().flatten(),
            };
            if let Some(v) = view {
                let sample = executor_sample(rec, index, now, &v);
                rec.executors.push(sample);
            }
        }
    }
}

/// An executor as the recording keeps it: names and frames interned; its workers only while
/// it is saturated (what a diagnosis shows), at most [`ExecutorSample::WORKERS`], so that an
/// hour of a healthy pool costs a few bytes a second.
pub fn executor_sample(rec: &mut Recording, loop_index: u16, t: f64, v: &ExecutorView) -> ExecutorSample {
    let n32 = |n: u64| n.min(u32::MAX as u64) as u32;
    let keep = if v.saturated() { ExecutorSample::WORKERS } else { 0 };
    let workers = v
        .workers
        .iter()
        .take(keep)
        .map(|w| WorkerSample {
            name: w.name.as_ref().map(|n| rec.threads.intern(n.clone())),
            state: w.state,
            work: w.work.as_ref().map(|f| rec.frames.intern(f.clone())),
            at: w.at.as_ref().map(|f| rec.frames.intern(f.clone())),
        })
        .collect();
    ExecutorSample {
        t,
        loop_index,
        max_workers: n32(v.max_workers),
        threads: n32(v.threads),
        busy: n32(v.busy),
        queued: v.queued,
        shutdown: v.shutdown,
        workers,
    }
}
