//! Executor starvation: the loop's default executor has every worker busy and work queued
//! behind them, for a sustained stretch. `run_in_executor(None, ...)` and `asyncio.to_thread`
//! then wait for a thread, not for their work: the tasks that await them pile up while the
//! loop itself looks idle.
//!
//! The rule (docs/metrics.md, "Executor starvation"): a read of the executor (about once a
//! second) is *starved* when work is queued, the pool has started `max_workers` threads, and
//! that many are seen running a work item. The diagnosis fires when at least
//! [`MIN_READS`] consecutive reads of a loop are starved and they span at least
//! [`MIN_SPAN`] seconds.

use std::collections::HashMap;

use super::{Diagnosis, Evidence, Inputs, Kind};
use crate::asyncio::executor::{ExecutorView, WorkerState};
use crate::capture::recording::{ExecutorSample, Recording};
use crate::python::frames::StackFrame;

/// Consecutive starved reads needed.
pub const MIN_READS: usize = 3;
/// Seconds from the first to the last of them.
pub const MIN_SPAN: f64 = 2.0;
/// Thread names listed in the evidence.
const NAMES_SHOWN: usize = 6;

/// A recorded loop's executor starvation, if any.
pub fn diagnose(i: &Inputs) -> Option<Diagnosis> {
    let rec = i.rec;
    let loop_index = i.summary.loop_index;
    let reads: Vec<&ExecutorSample> = rec.executors.iter().filter(|x| x.loop_index == loop_index).collect();
    let run = longest_starved_run(&reads)?;
    let first = run.first()?;
    let last = run.last()?;
    let span = last.t - first.t;
    if run.len() < MIN_READS || span < MIN_SPAN {
        return None;
    }
    let max_queued = run.iter().map(|x| x.queued).max().unwrap_or(0);
    let last_queued = reads.last().map(|x| x.queued).unwrap_or(last.queued);
    let until_end = reads.last().is_some_and(|x| std::ptr::eq(*x, *last));
    let (work, in_workers, names) = common_work(rec, &run);
    let work_text = work.as_ref().map(frame_text);
    let mut evidence = vec![
        Evidence::new("work items queued", format!("max {max_queued}, last {last_queued}")),
        Evidence::new("workers busy", format!("{}/{} (max_workers {})", last.busy, last.threads, last.max_workers)),
        Evidence::new(
            "starved for",
            format!("{span:.1} s, {} reads in a row{}", run.len(), if until_end { ", until the last read" } else { "" }),
        ),
    ];
    if let Some(w) = &work_text {
        let busy_reads: usize = run.iter().map(|x| x.workers.iter().filter(|w| w.state == WorkerState::Busy).count()).sum();
        evidence
            .push(Evidence::new("workers run", format!("{w} in {in_workers} of {busy_reads} busy worker reads: {}", names_text(&names))));
    }
    if let Some(p) = pending_tasks(rec, loop_index) {
        evidence.push(Evidence::new("pending tasks", p.to_string()));
    }
    let title = format!(
        "Executor starved: {}/{} workers busy{}, {} work items queued for {span:.0} s",
        last.busy,
        last.max_workers,
        work_text.as_deref().map(|w| format!(" in {w}")).unwrap_or_default(),
        last.queued,
    );
    Some(Diagnosis {
        kind: Kind::ExecutorStarvation,
        loop_index,
        title,
        evidence,
        next_step: next_step(work.as_ref(), last.max_workers as u64),
    })
}

/// One look (`dump`): starved at this moment (no stretch can be seen in one look).
pub fn diagnose_snapshot(x: &ExecutorView, pending_tasks: Option<usize>, loop_index: u16) -> Option<Diagnosis> {
    if !x.saturated() {
        return None;
    }
    let mut counts: Vec<(StackFrame, usize, Vec<&str>)> = Vec::new();
    for w in x.workers.iter().filter(|w| w.state == WorkerState::Busy) {
        let Some(f) = w.work.as_ref().or(w.at.as_ref()) else { continue };
        match counts.iter_mut().find(|(g, _, _)| g == f) {
            Some((_, n, names)) => {
                *n += 1;
                names.extend(w.name.as_deref());
            }
            None => counts.push((f.clone(), 1, w.name.as_deref().into_iter().collect())),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let top = counts.first();
    let mut evidence = vec![
        Evidence::new("work items queued", x.queued.to_string()),
        Evidence::new("workers busy", format!("{}/{} (max_workers {})", x.busy, x.threads, x.max_workers)),
    ];
    if let Some((f, n, names)) = top {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        evidence.push(Evidence::new("workers run", format!("{} in {n} of {} busy workers: {}", frame_text(f), x.busy, names_text(&names))));
    }
    if let Some(p) = pending_tasks {
        evidence.push(Evidence::new("pending tasks", p.to_string()));
    }
    let title = format!(
        "Executor starved: {}/{} workers busy{}, {} work items queued (at this moment)",
        x.busy,
        x.max_workers,
        top.map(|(f, _, _)| format!(" in {}", frame_text(f))).unwrap_or_default(),
        x.queued
    );
    Some(Diagnosis {
        kind: Kind::ExecutorStarvation,
        loop_index,
        title,
        evidence,
        next_step: next_step(top.map(|(f, _, _)| f), x.max_workers),
    })
}

fn next_step(work: Option<&StackFrame>, max_workers: u64) -> String {
    let what = work.map(|f| format!("`{}`", f.function)).unwrap_or_else(|| "the slow work".into());
    format!(
        "Give {what} a thread pool of its own (`loop.run_in_executor(pool, ...)` with a dedicated \
         `ThreadPoolExecutor`), raise the default executor's limit \
         (`loop.set_default_executor(ThreadPoolExecutor(max_workers=N))`, N > {max_workers}), \
         or make it async so that it needs no thread."
    )
}

/// The longest run of consecutive starved reads (the latest of equal length).
fn longest_starved_run<'a>(reads: &[&'a ExecutorSample]) -> Option<Vec<&'a ExecutorSample>> {
    let mut best: Option<(usize, usize)> = None;
    let mut start = None;
    for (i, x) in reads.iter().enumerate() {
        match (x.starved(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if best.is_none_or(|(a, b)| i - s >= b - a) {
                    best = Some((s, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        if best.is_none_or(|(a, b)| reads.len() - s >= b - a) {
            best = Some((s, reads.len()));
        }
    }
    best.map(|(a, b)| reads[a..b].to_vec())
}

/// The function most busy workers ran over the run (their work item's, else their innermost
/// frame), how many worker reads ran it, and the names of the threads seen running it.
fn common_work(rec: &Recording, run: &[&ExecutorSample]) -> (Option<StackFrame>, usize, Vec<String>) {
    let mut counts: HashMap<u32, (usize, Vec<u32>)> = HashMap::new();
    for x in run {
        for w in x.workers.iter().filter(|w| w.state == WorkerState::Busy) {
            let Some(f) = w.work.or(w.at) else { continue };
            let e = counts.entry(f).or_default();
            e.0 += 1;
            if let Some(n) = w.name {
                if !e.1.contains(&n) {
                    e.1.push(n);
                }
            }
        }
    }
    let Some((frame, (n, names))) = counts.into_iter().max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(&a.0))) else {
        return (None, 0, Vec::new());
    };
    if frame as usize >= rec.frames.len() {
        return (None, 0, Vec::new());
    }
    let mut names: Vec<String> =
        names.into_iter().filter(|n| (*n as usize) < rec.threads.len()).map(|n| rec.threads.get(n).to_string()).collect();
    names.sort();
    (Some(rec.frames.get(frame).clone()), n, names)
}

/// The last pending-task count of a loop.
fn pending_tasks(rec: &Recording, loop_index: u16) -> Option<usize> {
    rec.task_counts.iter().rev().find(|c| c.loop_index == loop_index).map(|c| c.counts.pending)
}

/// `function (file.py:line)`, with the file's last component.
fn frame_text(f: &StackFrame) -> String {
    let file = f.file.rsplit('/').next().unwrap_or(&f.file);
    format!("{} ({file}:{})", f.function, f.line)
}

fn names_text(names: &[String]) -> String {
    if names.len() > NAMES_SHOWN {
        format!("{}, ... ({} threads)", names[..NAMES_SHOWN].join(", "), names.len())
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::recording::{LoopMeta, WorkerSample};

    fn rec_with(reads: &[(f64, u64, u32)]) -> Recording {
        let meta = LoopMeta::test(1);
        let mut rec = Recording::new(100.0, vec![meta], 0.0);
        let f = rec.frames.intern(StackFrame { function: "render_export_sync".into(), file: "/srv/app.py".into(), line: 40 });
        for (t, queued, busy) in reads {
            let workers = (0..*busy)
                .map(|i| WorkerSample {
                    name: Some(rec.threads.intern(format!("asyncio_{i}"))),
                    state: WorkerState::Busy,
                    work: Some(f),
                    at: Some(f),
                })
                .collect();
            rec.executors.push(ExecutorSample {
                t: *t,
                loop_index: 0,
                max_workers: 6,
                threads: 6,
                busy: *busy,
                queued: *queued,
                shutdown: false,
                workers,
            });
        }
        rec
    }

    fn diagnosis(rec: &Recording) -> Option<Diagnosis> {
        let summary = crate::analysis::reference::summarize_loop(rec, 0, &Default::default());
        diagnose(&Inputs { summary: &summary, rec, recorded_s: summary.wall_s })
    }

    #[test]
    fn fires_on_a_sustained_stretch_only() {
        let starved = rec_with(&[(1.0, 30, 6), (2.0, 31, 6), (3.0, 34, 6), (4.0, 34, 6)]);
        let d = diagnosis(&starved).expect("starved for 3 s");
        assert_eq!(d.kind, Kind::ExecutorStarvation);
        assert!(d.title.contains("6/6 workers busy in render_export_sync (app.py:40)"), "{}", d.title);
        assert!(d.evidence.iter().any(|e| e.value == "max 34, last 34"));
        assert!(d.evidence.iter().any(|e| e.value.contains("asyncio_0, asyncio_1")), "{:?}", d.evidence);
        assert!(d.next_step.contains("set_default_executor"));
        // Too short, broken by a read with a free worker, or nothing queued: silent.
        assert!(diagnosis(&rec_with(&[(1.0, 30, 6), (2.0, 31, 6)])).is_none());
        assert!(diagnosis(&rec_with(&[(1.0, 30, 6), (2.0, 31, 5), (3.0, 34, 6), (4.0, 3, 6)])).is_none());
        assert!(diagnosis(&rec_with(&[(1.0, 0, 6), (2.0, 0, 6), (3.0, 0, 6), (4.0, 0, 6)])).is_none());
        assert!(diagnosis(&rec_with(&[])).is_none());
    }

    #[test]
    fn one_look_fires_only_when_saturated() {
        use crate::asyncio::executor::Worker;
        let f = StackFrame { function: "render_export_sync".into(), file: "/srv/app.py".into(), line: 40 };
        let worker = |i: usize, state| Worker {
            name: Some(format!("asyncio_{i}")),
            native_id: Some(i as i32),
            ident: Some(i as u64),
            state,
            work: Some(f.clone()),
            at: Some(f.clone()),
        };
        let mut x = ExecutorView {
            addr: 0x1000,
            class_name: "ThreadPoolExecutor".into(),
            max_workers: 2,
            threads: 2,
            busy: 2,
            queued: 9,
            shutdown: false,
            workers: vec![worker(0, WorkerState::Busy), worker(1, WorkerState::Busy)],
        };
        let d = diagnose_snapshot(&x, Some(11), 0).expect("saturated");
        assert!(d.title.contains("2/2 workers busy in render_export_sync (app.py:40), 9 work items queued"), "{}", d.title);
        assert!(d.evidence.iter().any(|e| e.value.contains("in 2 of 2 busy workers: asyncio_0, asyncio_1")), "{:?}", d.evidence);
        assert!(d.evidence.iter().any(|e| e.what == "pending tasks" && e.value == "11"));
        x.busy = 1;
        x.workers[1].state = WorkerState::Idle;
        assert!(diagnose_snapshot(&x, None, 0).is_none());
        x.busy = 2;
        x.queued = 0;
        assert!(diagnose_snapshot(&x, None, 0).is_none());
    }
}
