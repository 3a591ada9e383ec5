//! Task leak: the loop's pending tasks grow steadily, and which tasks they are.
//!
//! The rule, on the pending counts (about one a second, `capture::task_counter`): at least
//! [`MIN_COUNTS`] counts over at least [`MIN_SPAN_S`] seconds, whose least-squares slope is at
//! least [`MIN_SLOPE`] tasks a second with R² ≥ [`MIN_R2`] (steady growth, not noise or one
//! burst), and which grew by at least [`MIN_GROWTH`] tasks and [`MIN_GROWTH_SHARE`] of the
//! first count. The evidence names the largest groups of the last grouping pass
//! (`capture::task_groups`): their coroutine, what they wait on, how many; between two passes,
//! the group that grew most comes first. The next step depends on what that group waits on.

use std::fmt::Write as _;

use crate::analysis::diagnosis::{Diagnosis, Evidence, Inputs, Kind};
use crate::asyncio::tasks::WaitKind;
use crate::capture::task_groups::{TaskGroup, TaskGroupSample};

pub const MIN_COUNTS: usize = 4;
pub const MIN_SPAN_S: f64 = 3.0;
/// Tasks per second.
pub const MIN_SLOPE: f64 = 1.0;
pub const MIN_R2: f64 = 0.8;
pub const MIN_GROWTH: f64 = 20.0;
pub const MIN_GROWTH_SHARE: f64 = 0.1;
/// Groups named in the evidence.
const GROUPS_SHOWN: usize = 3;

/// Least-squares slope and R² of `(x, y)` points.
fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy <= 0.0 { 0.0 } else { sxy * sxy / (sxx * syy) };
    Some((slope, r2))
}

fn key(g: &TaskGroup) -> (&str, &str, i32, WaitKind) {
    (&g.function, &g.file, g.line, g.waits_on)
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `handle_request (app.py:25) waiting on asyncio.Semaphore, all on one at 0x...`.
fn describe(g: &TaskGroup) -> String {
    let mut s = format!("{} ({}:{}) waiting on {}", g.function, g.file, g.line, g.waits_on.label());
    match (&g.object, &g.object_name) {
        (Some(a), Some(name)) => {
            let _ = write!(s, " {name} at {a}, all the same task");
        }
        (Some(a), None) => {
            let _ = write!(s, ", all on one {} at {a}", g.object_type.as_deref().unwrap_or("object"));
        }
        (None, _) if g.objects > 1 => {
            let _ = write!(s, " ({}{} distinct objects)", g.objects, if g.objects >= 64 { "+" } else { "" });
        }
        _ => {}
    }
    s
}

/// What to do about a group of leaking tasks, by what they wait on.
fn next_step(g: &TaskGroup) -> String {
    let who = format!("`{}`", g.function);
    let one = g.object.is_some();
    match g.waits_on {
        WaitKind::Semaphore | WaitKind::BoundedSemaphore => format!(
            "{who} tasks pile up on {} semaphore: they are created faster than it admits them, or a holder never releases it. \
             Bound creation instead of queueing tasks on the semaphore (a fixed-size asyncio.Queue served by a fixed number of \
             workers, or acquire before create_task), and release on every path (`async with sem`).",
            if one { "one" } else { "a" }
        ),
        WaitKind::Lock => format!(
            "{who} tasks wait on {} lock: find the task holding it (dump --tree) and make sure it releases it (`async with lock`); \
             do not start a task per request that only waits for the lock.",
            if one { "one" } else { "a" }
        ),
        WaitKind::Event | WaitKind::Condition | WaitKind::Barrier | WaitKind::QueueJoin => format!(
            "{who} tasks wait for {} that is never set or notified: set it, or give the wait a timeout (asyncio.wait_for / \
             asyncio.timeout) and cancel the tasks you no longer need.",
            g.waits_on.label()
        ),
        WaitKind::QueueGet => format!(
            "{who} tasks wait on a queue nobody feeds: run a fixed number of consumers, and cancel them when the producer is done \
             (or put a sentinel per consumer)."
        ),
        WaitKind::QueuePut => {
            format!("{who} tasks are blocked putting into a full queue: its consumers are too slow or stopped; bound the producers.")
        }
        WaitKind::Future => format!(
            "{who} tasks await futures nobody completes (a forgotten future): complete them on every path (set_result / \
             set_exception, cancel on error), or await them with a timeout."
        ),
        WaitKind::Task | WaitKind::Gather | WaitKind::Wait | WaitKind::WaitFor => {
            format!("{who} tasks await other tasks that do not finish: find those (dump --tree), and cancel or time out what you await.")
        }
        WaitKind::Sleep | WaitKind::Scheduled => format!(
            "{who} tasks are created faster than they finish: bound how many run at once (an asyncio.Semaphore around the \
             create_task call, a fixed pool of workers fed by a bounded asyncio.Queue, or an asyncio.TaskGroup per batch)."
        ),
        WaitKind::StreamRead | WaitKind::StreamWrite | WaitKind::SocketIo => format!(
            "{who} tasks wait on connections that never complete: put a timeout on each read/write (asyncio.timeout / \
             wait_for) and close idle connections."
        ),
    }
}

pub fn diagnose(i: &Inputs) -> Option<Diagnosis> {
    let series = &i.summary.task_series;
    if series.len() < MIN_COUNTS {
        return None;
    }
    let span = series.last()?.t_s - series.first()?.t_s;
    if span < MIN_SPAN_S {
        return None;
    }
    let points: Vec<(f64, f64)> = series.iter().map(|p| (p.t_s, p.pending as f64)).collect();
    let (slope, r2) = fit(&points)?;
    let first = series.first()?.pending as f64;
    let growth = slope * span;
    if !(slope >= MIN_SLOPE && r2 >= MIN_R2 && growth >= MIN_GROWTH && growth >= MIN_GROWTH_SHARE * first) {
        return None;
    }
    let now = series.last()?.pending;
    let mut evidence = vec![
        Evidence::new("pending tasks grow", format!("{slope:+.0}/s over {span:.0} s (R² {r2:.2}, {} counts)", series.len())),
        Evidence::new("pending now", thousands(now)),
    ];
    let passes: Vec<&TaskGroupSample> = i.rec.task_groups.passes.iter().filter(|p| p.loop_index == i.summary.loop_index).collect();
    let last = passes.last().copied();
    // Groups, the one that grew most since the earliest pass first (by size with one pass).
    let mut ranked: Vec<(&TaskGroup, f64)> = Vec::new();
    if let Some(last) = last {
        let earliest = passes.first().filter(|p| p.t < last.t);
        for g in &last.groups {
            let grew = earliest.map(|e| {
                let before = e.groups.iter().find(|o| key(o) == key(g)).map_or(0, |o| o.estimated);
                (g.estimated as f64 - before as f64) / (last.t - e.t)
            });
            ranked.push((g, grew.unwrap_or(g.estimated as f64)));
        }
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.estimated.cmp(&a.0.estimated)));
        let ago = (i.rec.ended - last.t).max(0.0);
        let when = if ago >= 1.0 { format!(", {ago:.0} s before the end") } else { String::new() };
        let grouped = if last.sampled {
            format!("{} of {} pending tasks{when}: group sizes are estimates", thousands(last.examined), thousands(last.pending))
        } else {
            format!("all {} pending tasks{when}", thousands(last.pending))
        };
        evidence.push(Evidence::new("grouped", grouped));
        let timed = earliest.is_some();
        for (g, grew) in ranked.iter().take(GROUPS_SHOWN) {
            let growth = if timed { format!(", {grew:+.0}/s") } else { String::new() };
            let approx = if last.sampled { "~" } else { "" };
            evidence.push(Evidence::new("tasks", format!("{approx}{} × {}{growth}", thousands(g.estimated), describe(g))));
        }
    }
    let (title, next) = match ranked.first() {
        Some((g, _)) => (
            format!(
                "Task leak: pending tasks grow by {slope:.0}/s; most are {} waiting on {}",
                g.function,
                if g.object.is_some() { format!("one {}", g.waits_on.label()) } else { g.waits_on.label().to_string() }
            ),
            next_step(g),
        ),
        None => (
            format!("Task leak: pending tasks grow by {slope:.0}/s"),
            "Tasks are created faster than they finish: await or cancel every task you create (keep a reference; an \
             asyncio.TaskGroup does both), and bound how many run at once. `loopspy dump` groups them by coroutine."
                .to_string(),
        ),
    };
    Some(Diagnosis { kind: Kind::TaskLeak, loop_index: i.summary.loop_index, title, evidence, next_step: next })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::analysis::metrics::{analyze, Options};
    use crate::asyncio::loopstate::LoopState;
    use crate::asyncio::tasks::TaskCounts;
    use crate::capture::recording::{LoopMeta, Recording, Sample, TaskCountSample, ThreadActivity};

    fn group(function: &str, kind: WaitKind, n: usize, object: Option<&str>) -> TaskGroup {
        TaskGroup {
            function: function.into(),
            file: "/app/x.py".into(),
            line: 7,
            waits_on: kind,
            via: None,
            examined: n,
            estimated: n,
            objects: object.is_some() as usize,
            object: object.map(String::from),
            object_type: object.map(|_| "Semaphore".to_string()),
            object_name: None,
        }
    }

    /// 10 s of an idle loop whose pending tasks are `pending(second)`, grouped at 1 s and 9 s.
    fn recording(pending: impl Fn(usize) -> usize, groups: impl Fn(usize) -> Vec<TaskGroup>) -> Recording {
        let meta = LoopMeta::test(1);
        let mut rec = Recording::new(10.0, vec![meta], 100.0);
        let stack = rec.intern_stack(&[]);
        for i in 0..100 {
            let t = 100.0 + i as f64 / 10.0;
            rec.samples.push(Sample {
                t,
                loop_index: 0,
                state: LoopState::Idle,
                activity: ThreadActivity::Waiting(232),
                ready: 0,
                lateness: Some(0.0),
                stack,
                loop_frames: 0,
                callback: None,
                task: None,
                busy_for: None,
                gc: crate::python::gc::GcAt::Unknown,
            });
        }
        for sec in 0..10 {
            let n = pending(sec);
            let counts = TaskCounts { total: n, pending: n, ..Default::default() };
            rec.task_counts.push(TaskCountSample { t: 100.0 + sec as f64, loop_index: 0, counts, truncated: false });
        }
        for sec in [1, 9] {
            let groups = groups(sec);
            let n = groups.iter().map(|g| g.examined).sum();
            rec.task_groups.push(TaskGroupSample {
                t: 100.0 + sec as f64,
                loop_index: 0,
                pending: n,
                examined: n,
                sampled: false,
                unreadable: 0,
                groups,
                other_tasks: 0,
                cost_ms: 1.0,
            });
        }
        rec.ended = 110.0;
        rec
    }

    #[test]
    fn fires_on_steady_growth_naming_the_group_that_grows() {
        // 300 tasks a second on one semaphore; a bigger but flat group of queue consumers.
        let rec = recording(
            |s| 5000 + 300 * s,
            |s| vec![group("consume", WaitKind::QueueGet, 5000, None), group("handle", WaitKind::Semaphore, 300 * s, Some("0x10"))],
        );
        let a = analyze(&rec, &Options::default());
        let d = a.diagnoses.iter().find(|d| d.kind == Kind::TaskLeak).expect("a task leak");
        assert!(d.title.contains("grow by 300/s") && d.title.contains("handle waiting on one asyncio.Semaphore"), "{}", d.title);
        assert!(d.evidence[3].value.contains("handle") && d.evidence[3].value.contains("+300/s"), "{:?}", d.evidence);
        assert!(d.next_step.contains("semaphore"));
    }

    #[test]
    fn silent_on_a_flat_or_noisy_count_and_on_small_growth() {
        let none = |_: usize| Vec::new();
        for pending in [
            (|_| 40) as fn(usize) -> usize,
            |s| 40 + [0, 9, 2, 7, 1, 8, 3, 6, 0, 9][s],
            // Grows steadily, but by 9 tasks in all.
            |s| 40 + s,
            // One burst, then flat: not steady.
            |s| if s < 5 { 100 } else { 1000 },
        ] {
            let rec = recording(pending, none);
            let a = analyze(&rec, &Options::default());
            assert!(a.diagnoses.iter().all(|d| d.kind != Kind::TaskLeak), "{:?}", a.diagnoses);
        }
    }

    #[test]
    fn fit_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..6).map(|i| (i as f64, 100.0 + 300.0 * i as f64)).collect();
        let (slope, r2) = fit(&line).unwrap();
        assert!((slope - 300.0).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..6).map(|i| (i as f64, if i % 2 == 0 { 40.0 } else { 44.0 })).collect();
        let (slope, r2) = fit(&flat).unwrap();
        assert!(slope.abs() < 1.0 && r2 < 0.3, "{slope} {r2}");
        assert_eq!(fit(&[(1.0, 2.0)]), None);
        assert_eq!(fit(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn numbers_with_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
