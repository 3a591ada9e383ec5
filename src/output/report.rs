//! `record`'s JSON document and its end-of-run summary.
//!
//! Plain data built from a [`Recording`] and its [`Analysis`]; schema in
//! `docs/json-schema.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::analysis::metrics::{Analysis, BlockingFrame, LoopSummary};
use crate::base::units::ms_text;
use crate::capture::recording::{EndReason, LoopMeta, ProcessEnd, ProcessMeta, Recording};
use crate::python::published::LayoutCheck;

pub const SCHEMA_VERSION: u32 = 1;

/// Facts about the target, as for `dump`.
#[derive(Debug, Clone, Serialize)]
pub struct TargetFacts {
    pub pid: i32,
    pub command: Vec<String>,
    pub python: String,
    pub layout: LayoutCheck,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    pub schema_version: u32,
    pub kind: &'static str,
    /// `--subprocesses`: the target is the parent, and the loops are grouped by process.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub subprocesses: bool,
    pub target: TargetFacts,
    pub recording: RecordingFacts,
    /// The loops of a recording of one process (absent with `--subprocesses`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loops: Option<Vec<LoopReport>>,
    /// With `--subprocesses`: each process recorded, in the order they joined, with its loops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessReport>>,
    /// Over every loop (of every process), most blocked time first.
    pub blocking_frames: Vec<BlockingFrame>,
}

/// One process of a recording of several (`--subprocesses`).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    #[serde(flatten)]
    pub meta: ProcessMeta,
    /// `joined` and `left` in seconds since the recording started.
    pub joined_s: f64,
    pub left_s: Option<f64>,
    pub loops: Vec<LoopReport>,
    /// Over this process's loops, most blocked time first.
    pub blocking_frames: Vec<BlockingFrame>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordingFacts {
    pub rate_hz: f64,
    /// Start and end of the recording in the target's `CLOCK_MONOTONIC` seconds (as
    /// `loop.time()`; episodes' `start`/`end` use the same clock).
    pub start: f64,
    pub end_time: f64,
    pub duration_s: f64,
    pub samples: usize,
    /// Looks that were not samples (after retries), and why.
    pub failed_samples: u64,
    pub failed_pct: f64,
    pub failed_by_reason: BTreeMap<&'static str, u64>,
    /// Looks per second per loop, samples and failed looks together (`rate_hz` was asked).
    pub achieved_hz: f64,
    /// Share of the recording the target was held stopped (`--blocking`): it ran that much
    /// slower.
    pub paused_pct: f64,
    /// What makes these figures less trustworthy than usual, said plainly.
    pub warnings: Vec<String>,
    pub end: EndReason,
    pub blocking_mode: bool,
    pub threshold_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoopReport {
    #[serde(flatten)]
    pub meta: LoopMeta,
    #[serde(flatten)]
    pub summary: LoopSummary,
    /// Why this loop is slow and what to do, most urgent first (empty when healthy).
    pub diagnoses: Vec<crate::analysis::diagnosis::Diagnosis>,
    /// The loop's pending tasks grouped by coroutine and what they wait on, at the last
    /// grouping pass (absent when none was taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_groups: Option<crate::capture::task_groups::TaskGroupsReport>,
}

pub fn build(target: TargetFacts, rec: &Recording, analysis: &Analysis, blocking_mode: bool) -> RecordReport {
    let loop_report = |l: &LoopSummary| LoopReport {
        meta: rec.loops[l.loop_index as usize].clone(),
        summary: l.clone(),
        diagnoses: analysis.diagnoses.iter().filter(|d| d.loop_index == l.loop_index).cloned().collect(),
        task_groups: rec.task_groups.latest(l.loop_index).map(|g| crate::capture::task_groups::TaskGroupsReport::of(g, Some(rec.started))),
    };
    let (loops, processes) = if rec.is_fleet() {
        let processes = rec
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mine: Vec<&LoopSummary> =
                    analysis.loops.iter().filter(|l| rec.process_of_loop(l.loop_index) == Some(i as u16)).collect();
                ProcessReport {
                    meta: p.clone(),
                    joined_s: p.joined - rec.started,
                    left_s: p.left.map(|t| t - rec.started),
                    blocking_frames: crate::analysis::metrics::blocking_frames_of(mine.iter().copied()),
                    loops: mine.into_iter().map(loop_report).collect(),
                }
            })
            .collect();
        (None, Some(processes))
    } else {
        (Some(analysis.loops.iter().map(loop_report).collect()), None)
    };
    RecordReport {
        schema_version: SCHEMA_VERSION,
        kind: "record",
        subprocesses: rec.is_fleet(),
        target,
        recording: RecordingFacts {
            rate_hz: rec.rate_hz,
            start: rec.started,
            end_time: rec.ended,
            duration_s: rec.duration(),
            samples: rec.total_samples() as usize,
            failed_samples: rec.total_failures(),
            failed_pct: rec.failed_pct(),
            failed_by_reason: rec.failures_by_reason().into_iter().map(|(r, n)| (r.as_str(), n)).collect(),
            achieved_hz: achieved_hz(rec),
            paused_pct: paused_pct(rec),
            warnings: warnings(rec),
            end: rec.end,
            blocking_mode,
            threshold_ms: analysis.threshold_ms,
        },
        loops,
        processes,
        blocking_frames: analysis.blocking_frames.clone(),
    }
}

/// Failed looks above this share are listed by reason in the summary.
pub const FAILED_NOTE_PCT: f64 = 1.0;
/// Failed looks above this share make every output say the figures are unreliable.
pub const FAILED_WARN_PCT: f64 = 20.0;
/// A rate achieved below this share of the asked one is reported.
pub const RATE_WARN_SHARE: f64 = 0.9;

/// Looks per second at a loop (samples and failed looks) over the time each loop lived: a
/// loop that ran for 30 ms of a 10 s recording counts for 30 ms, not 10 s.
pub fn achieved_hz(rec: &Recording) -> f64 {
    let spans = loop_spans(rec);
    let looks: u64 = spans.iter().map(|s| s.looks).sum();
    let lived: f64 = spans.iter().enumerate().map(|(i, s)| rec.lived(i, s)).sum();
    if lived <= 0.0 {
        0.0
    } else {
        looks as f64 / lived
    }
}

pub use crate::capture::recording::LoopSpan;

/// Per loop of the recording, its looks (those a bounded recording let go of included).
pub fn loop_spans(rec: &Recording) -> Vec<LoopSpan> {
    rec.loop_spans()
}

/// Looks at a loop before its failed share is worth a warning of its own.
const LOOKS_FOR_A_LOOP_WARNING: u64 = 100;

/// The highest failed share among loops with enough looks (a short-lived loop's few looks
/// say little), and which loop.
pub fn worst_loop_failed_pct(rec: &Recording) -> Option<(usize, f64)> {
    loop_spans(rec)
        .iter()
        .enumerate()
        .filter(|(_, s)| s.looks >= LOOKS_FOR_A_LOOP_WARNING)
        .map(|(i, s)| (i, s.failed_pct()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Share of the recording the target was held stopped by `--blocking`, in percent.
pub fn paused_pct(rec: &Recording) -> f64 {
    let d = rec.duration();
    if d <= 0.0 {
        0.0
    } else {
        (100.0 * rec.paused / d).min(100.0)
    }
}

/// Pausing the target (`--blocking`) more than this share of the time is reported.
pub const PAUSED_WARN_PCT: f64 = 2.0;

/// `torn_stack 12.0 %, changed 0.5 %`: the failed looks' reasons, as shares of all looks.
pub fn failure_reasons(rec: &Recording) -> String {
    let all = (rec.total_samples() + rec.total_failures()).max(1) as f64;
    rec.failures_by_reason()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{} {:.1} %", r.as_str(), 100.0 * n as f64 / all))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What makes a recording's figures less trustworthy than usual: too many failed looks, a
/// rate well below the one asked. Said in every output.
pub fn warnings(rec: &Recording) -> Vec<String> {
    let mut out = Vec::new();
    let failed = rec.failed_pct();
    let worst = worst_loop_failed_pct(rec).filter(|(_, pct)| *pct > FAILED_WARN_PCT && rec.loops.len() > 1);
    if failed > FAILED_WARN_PCT {
        out.push(format!(
            "WARNING: {failed:.0} % of the looks at the loop failed ({}): the figures describe only the rest. Try again; --blocking pauses the target while reading.",
            failure_reasons(rec)
        ));
    } else if let Some((i, pct)) = worst {
        let name = rec.loops[i].thread_name.clone().unwrap_or_else(|| format!("thread {}", rec.loops[i].native_id.unwrap_or(0)));
        out.push(format!(
            "WARNING: {pct:.0} % of the looks at the loop of {} failed ({failed:.1} % of all loops): its figures describe only the rest. Try again; --blocking pauses the target while reading.",
            crate::base::escape::terminal(&name),
        ));
    }
    let paused = paused_pct(rec);
    if paused > PAUSED_WARN_PCT {
        out.push(format!(
            "WARNING: --blocking held the target stopped {paused:.1} % of the time: it ran that much slower while recorded (without --blocking it is never paused)."
        ));
    }
    let achieved = achieved_hz(rec);
    if rec.duration() >= 1.0 && achieved < RATE_WARN_SHARE * rec.rate_hz {
        out.push(format!(
            "WARNING: sampled at {achieved:.0} Hz of the {:.0} Hz asked (loopspy could not keep up: a busy machine or a very large target); durations are good to about {:.0} ms.",
            rec.rate_hz,
            2e3 / achieved.max(1e-9)
        ));
    }
    out
}

/// The headline figures of one loop, on one line (flame graph subtitle, status lines).
pub fn headline(rec: &Recording, analysis: &Analysis) -> String {
    let episodes: usize = analysis.loops.iter().map(|l| l.episodes.len() + l.episodes_omitted as usize).sum();
    let warned: String = warnings(rec).iter().map(|w| format!("{w} | ")).collect();
    if rec.is_fleet() {
        // The busiest loop and the worst lag stand for the fleet; the flame graph has each.
        let busiest = analysis.loops.iter().max_by(|a, b| a.busy_pct.total_cmp(&b.busy_pct));
        let lag = analysis.loops.iter().map(|l| l.lag.max_ms).fold(0.0, f64::max);
        let left = rec.processes.iter().filter(|p| p.left.is_some()).count();
        return format!(
            "{warned}{:.1} s, {} samples at {:.0} Hz per process | {} process{} ({} left), {} loop{} | busiest loop {:.1}% busy | lag max {} | {} blocking episode{} >= {:.0} ms",
            rec.duration(),
            rec.samples.len(),
            rec.rate_hz,
            rec.processes.len(),
            if rec.processes.len() == 1 { "" } else { "es" },
            left,
            rec.loops.len(),
            if rec.loops.len() == 1 { "" } else { "s" },
            busiest.map(|l| l.busy_pct).unwrap_or(0.0),
            ms_text(lag),
            episodes,
            if episodes == 1 { "" } else { "s" },
            analysis.threshold_ms
        );
    }
    let figures = match analysis.loops.first() {
        Some(l) => format!(
            "{:.1} s, {} samples at {:.0} Hz | busy {:.1}%, idle in select {:.1}% | lag p99 {}, max {} | {} blocking episode{} >= {:.0} ms",
            rec.duration(),
            rec.total_samples(),
            rec.rate_hz,
            l.busy_pct,
            l.select_pct,
            ms_text(l.lag.p99_ms),
            ms_text(l.lag.max_ms),
            episodes,
            if episodes == 1 { "" } else { "s" },
            analysis.threshold_ms
        ),
        None => format!("{:.1} s, no samples", rec.duration()),
    };
    format!("{warned}{figures}")
}

/// A string from the target (or the user), for a terminal.
fn e(s: &str) -> std::borrow::Cow<'_, str> {
    crate::base::escape::terminal(s)
}

/// A loop's figures in the summary.
fn loop_lines(out: &mut String, lr: &LoopReport, indent: &str) {
    let LoopReport { meta, summary: l, .. } = lr;
    let _ = writeln!(
        out,
        "{indent}{} ({}): busy {:.1}%, idle in select {:.1}%, lag p50 {} p99 {} max {}, ready max {} (trend {:+.1}/s), {} blocking episode{}",
        e(meta.thread_name.as_deref().unwrap_or("thread")),
        e(&meta.loop_class),
        l.busy_pct,
        l.select_pct,
        ms_text(l.lag.p50_ms),
        ms_text(l.lag.p99_ms),
        ms_text(l.lag.max_ms),
        l.ready.max,
        l.ready.trend_per_s,
        l.episodes.len() + l.episodes_omitted as usize,
        if l.episodes.len() + l.episodes_omitted as usize == 1 { "" } else { "s" }
    );
    if l.episodes_omitted > 0 {
        let _ = writeln!(
            out,
            "{indent}(the {} longest episodes are listed; {} shorter ones count in every figure and in the JSON lines)",
            l.episodes.len(),
            l.episodes_omitted
        );
    }
    if let Some(t) = &l.tasks {
        let _ = writeln!(
            out,
            "{indent}pending tasks: {} now, max {} (trend {:+.1}/s){}",
            t.pending_last,
            t.pending_max,
            t.pending_trend_per_s,
            if t.truncated { " (registry cut at 1,000,000: lower bounds)" } else { "" }
        );
    }
    diagnosis_lines(out, &lr.diagnoses, indent);
}

/// Diagnoses for a terminal: the title, the evidence on one line, the next step (strings
/// from the target escaped).
pub fn diagnosis_lines(out: &mut String, diagnoses: &[crate::analysis::diagnosis::Diagnosis], indent: &str) {
    for d in diagnoses {
        let _ = writeln!(out, "{indent}DIAGNOSIS: {}", e(&d.title));
        let evidence: Vec<String> = d.evidence.iter().map(|x| format!("{}: {}", e(&x.what), e(&x.value))).collect();
        let _ = writeln!(out, "{indent}  evidence: {}", evidence.join("; "));
        let _ = writeln!(out, "{indent}  next step: {}", e(&d.next_step));
    }
}

/// The summary printed on stderr at the end of a recording.
pub fn summary(rep: &RecordReport, written: &[String]) -> String {
    let mut out = String::new();
    let r = &rep.recording;
    let end = match r.end {
        EndReason::Duration => "duration reached",
        EndReason::Interrupted => "stopped by you",
        EndReason::TargetExited => "the target exited",
        EndReason::Running => "running",
        EndReason::HungUp => "the terminal hung up",
        EndReason::Terminated => "terminated (SIGTERM)",
        EndReason::TargetExec => "the target ran another program (exec)",
        EndReason::Cut => "cut short: loopspy was stopped while recording",
    };
    let _ = writeln!(
        out,
        "loopspy: recorded PID {}{} for {:.1} s ({end}): {} samples at {:.0} Hz, {} failed look{} ({:.1} %)",
        rep.target.pid,
        match &rep.processes {
            Some(p) => format!(" and its subprocesses ({} process{} with event loops)", p.len(), if p.len() == 1 { "" } else { "es" }),
            None => String::new(),
        },
        r.duration_s,
        r.samples,
        r.rate_hz,
        r.failed_samples,
        if r.failed_samples == 1 { "" } else { "s" },
        r.failed_pct,
    );
    if r.failed_pct > FAILED_NOTE_PCT && r.failed_pct <= FAILED_WARN_PCT {
        let reasons: Vec<String> = r.failed_by_reason.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "  failed looks by reason: {}", reasons.join(", "));
    }
    for w in &r.warnings {
        let _ = writeln!(out, "  {w}");
    }
    for l in rep.loops.iter().flatten() {
        loop_lines(&mut out, l, "  ");
    }
    for p in rep.processes.iter().flatten() {
        let mut head = format!("PID {} {}", p.meta.pid, e(&p.meta.command.join(" ")));
        if head.chars().count() > 100 {
            head = head.chars().take(97).collect::<String>() + "...";
        }
        let joined = if p.joined_s > 0.05 { format!(", joined at {:.1} s", p.joined_s) } else { String::new() };
        let gone = match (p.meta.end, p.left_s) {
            (Some(ProcessEnd::Exec), Some(t)) => format!(", ran exec() at {t:.1} s"),
            (Some(ProcessEnd::Exited), Some(t)) => format!(", exited at {t:.1} s"),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {head} (Python {}{joined}{gone}):", e(&p.meta.python));
        for l in &p.loops {
            loop_lines(&mut out, l, "    ");
        }
    }
    if !rep.blocking_frames.is_empty() {
        let _ = writeln!(out, "  top blocking frames (>= {:.0} ms):", r.threshold_ms);
        for f in rep.blocking_frames.iter().take(5) {
            let how = if f.on_cpu { "on CPU".to_string() } else { format!("waiting in {}", f.waiting_in.as_deref().unwrap_or("?")) };
            // The garbage collector has no file.
            let place = if f.file.is_empty() { String::new() } else { format!(" ({}:{})", e(&f.file), f.line) };
            let _ = writeln!(
                out,
                "    {:>9}  {} x{}  {}{place}, {how}",
                ms_text(f.blocked_ms),
                if f.episodes == 1 { "episode" } else { "episodes" },
                f.episodes,
                e(&f.function),
            );
        }
    }
    for path in written {
        let _ = writeln!(out, "  wrote {}", e(path));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asyncio::eventloop::LoopKind;
    use crate::asyncio::loopstate::LoopState;
    use crate::capture::probe::FailReason;
    use crate::capture::recording::{FailedSample, LoopMeta, Sample, ThreadActivity};

    fn sample(t: f64, loop_index: u16) -> Sample {
        Sample {
            t,
            loop_index,
            state: LoopState::Idle,
            activity: ThreadActivity::OnCpu,
            ready: 0,
            lateness: None,
            stack: 0,
            loop_frames: 0,
            callback: None,
            task: None,
            busy_for: None,
            gc: crate::python::gc::GcAt::Unknown,
        }
    }

    /// Names from the target in a diagnosis reach the terminal escaped.
    #[test]
    fn diagnoses_are_escaped_for_the_terminal() {
        use crate::analysis::diagnosis::{Diagnosis, Evidence, Kind};
        let d = Diagnosis {
            kind: Kind::SyncIo,
            loop_index: 0,
            title: "blocked in f\x1b[2J".into(),
            evidence: vec![Evidence::new("blamed frame", "g\x1b]0;x\x07 (app.py:1)")],
            next_step: "`await asyncio.to_thread(h\r\n, ...)`".into(),
        };
        let mut out = String::new();
        diagnosis_lines(&mut out, &[d], "  ");
        assert!(!out.contains('\x1b') && !out.contains('\x07') && !out.contains('\r'), "{out:?}");
        assert_eq!(out.lines().count(), 3, "{out:?}");
        assert!(out.starts_with("  DIAGNOSIS: blocked in f") && out.contains("evidence: blamed frame: g"), "{out:?}");
    }

    /// A main loop looked at every 10 ms for 10 s (one look in four failing), and 150 loops
    /// that each lived 20 ms with 2 looks: the rate is the main loop's, and its failures are
    /// not averaged away by the short-lived loops.
    #[test]
    fn the_rate_and_failures_follow_each_loop_over_its_life() {
        let meta = |i: i32| LoopMeta {
            native_id: Some(i),
            thread_name: None,
            loop_class: "L".into(),
            loop_kind: LoopKind::Selector,
            selector: None,
            found: None,
        };
        let mut rec = Recording::new(100.0, (0..151).map(meta).collect(), 0.0);
        for k in 0..1000 {
            let t = k as f64 * 0.01;
            if k % 4 == 0 {
                rec.failures.push(FailedSample { t, loop_index: 0, reason: FailReason::Changed });
            } else {
                rec.samples.push(sample(t, 0));
            }
        }
        for i in 1..151u16 {
            let t0 = i as f64 * 0.06;
            rec.samples.push(sample(t0, i));
            rec.samples.push(sample(t0 + 0.01, i));
        }
        rec.samples.sort_by(|a, b| a.t.total_cmp(&b.t));
        rec.ended = 10.0;
        let hz = achieved_hz(&rec);
        // 1,300 looks over 10 s of the main loop plus 150 × 20 ms: 100 Hz (the whole
        // recording's 10 s for 151 loops would say 0.86 Hz).
        assert!((hz - 100.0).abs() < 1e-6, "{hz}");
        assert!(!warnings(&rec).iter().any(|w| w.contains("Hz of the")), "{:?}", warnings(&rec));
        let (worst, pct) = worst_loop_failed_pct(&rec).unwrap();
        assert_eq!((worst, pct.round()), (0, 25.0));
        // 250 failed of 1,300 looks overall (19 %, under the warning's 20 %), but 25 % of the
        // main loop's.
        let w = warnings(&rec);
        assert!(w.iter().any(|w| w.starts_with("WARNING: 25 % of the looks at the loop of thread 0 failed")), "{w:?}");
    }
}
