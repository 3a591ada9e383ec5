//! JSON lines (`record --format jsonl`): one line per loop as it appears, one per loop and
//! second once the second is complete, one per blocking episode as it ends, and a last line
//! when the recording ends. Each line is a whole JSON document, written in one piece, so a
//! reader (`jq`, a log shipper) sees valid lines even when loopspy is stopped mid-run.
//! Schema: docs/json-schema.md.
//!
//! [`JsonlFeed`] only builds the lines from what the stream and the recording hold; where they
//! go (a file, standard output) is the caller's business.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::{json, Value};

use crate::analysis::metrics::Episode;
use crate::analysis::stream::Stream;
use crate::capture::recording::{FailedSample, Recording, TaskCountSample};

/// `schema_version` of the lines (changes when a field changes meaning or disappears).
pub const SCHEMA_VERSION: u32 = 1;

/// What the `start` line says about the recording.
#[derive(Debug, Clone, Serialize)]
pub struct StartFacts {
    pub pid: i32,
    pub command: Vec<String>,
    pub python: String,
    pub rate_hz: f64,
    pub threshold_ms: f64,
}

/// What has been written for one loop.
#[derive(Debug, Default, Clone)]
struct LoopCursor {
    /// Its `loop` line was written.
    announced: bool,
    /// Seconds written.
    windows: usize,
    /// Episodes written (counting those the stream has since dropped).
    episodes: u64,
    /// Failed looks per window not written yet: `(window, count)`, in window order.
    failed: VecDeque<(usize, u32)>,
    /// Task counts not yet used: `(t, pending)`, in time order; the last one used stays as
    /// the value for seconds without a count of their own.
    tasks: VecDeque<(f64, usize)>,
    pending_tasks: Option<usize>,
}

/// Builds the lines of a recording as it grows.
#[derive(Debug, Default)]
pub struct JsonlFeed {
    loops: Vec<LoopCursor>,
    started: bool,
    ended: bool,
}

impl JsonlFeed {
    pub fn new() -> Self {
        JsonlFeed::default()
    }

    /// A look that failed (so that its second says how many did).
    pub fn failed(&mut self, stream: &Stream, f: &FailedSample) {
        let opts = &stream.opts;
        if opts.window <= 0.0 {
            return;
        }
        let k = ((f.t - opts.origin) / opts.window).floor();
        if !(0.0..1e9).contains(&k) {
            return;
        }
        let c = self.cursor(f.loop_index as usize);
        let k = k as usize;
        match c.failed.back_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => c.failed.push_back((k, 1)),
        }
    }

    /// A task count (the seconds after it report its pending tasks).
    pub fn tasks(&mut self, c: &TaskCountSample) {
        self.cursor(c.loop_index as usize).tasks.push_back((c.t, c.counts.pending));
    }

    fn cursor(&mut self, i: usize) -> &mut LoopCursor {
        if self.loops.len() <= i {
            self.loops.resize(i + 1, LoopCursor::default());
        }
        &mut self.loops[i]
    }

    /// The lines due now: the start line (once), new loops, complete seconds, ended episodes.
    pub fn lines(&mut self, rec: &Recording, stream: &Stream, facts: &StartFacts) -> Vec<String> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(line(json!({
                "type": "start",
                "schema_version": SCHEMA_VERSION,
                "pid": facts.pid,
                "command": facts.command,
                "python": facts.python,
                "rate_hz": facts.rate_hz,
                "threshold_ms": facts.threshold_ms,
            })));
        }
        for i in 0..rec.loops.len() {
            if !self.cursor(i).announced {
                self.cursor(i).announced = true;
                out.push(loop_line(rec, i));
            }
            let Some(ls) = stream.loop_stream(i) else { continue };
            // Episodes that ended since the last lines (the stream keeps the last few).
            let total = ls.ended_total();
            let c = self.cursor(i);
            let new = (total - c.episodes.min(total)) as usize;
            let recent = ls.recent();
            for e in recent.iter().skip(recent.len() - new.min(recent.len())) {
                out.push(episode_line(e));
            }
            self.cursor(i).episodes = total;
            // Complete seconds, from the loop's first.
            let first = ls.first_window();
            if self.cursor(i).windows < first {
                self.cursor(i).windows = first;
            }
            let complete = ls.complete_windows(&stream.opts);
            while self.cursor(i).windows < complete {
                let k = self.cursor(i).windows;
                let w = ls.window(rec, &stream.opts, k);
                out.push(self.second_line(i, k, &w, &stream.opts));
                self.cursor(i).windows += 1;
            }
        }
        out
    }

    /// The last lines: the rest of the seconds, the episode still going on (`"ongoing":
    /// true`), and the `end` line. Nothing after it.
    pub fn finish(&mut self, rec: &Recording, stream: &Stream, facts: &StartFacts) -> Vec<String> {
        if self.ended {
            return Vec::new();
        }
        let mut out = self.lines(rec, stream, facts);
        self.ended = true;
        let threshold = facts.threshold_ms / 1e3;
        let summaries = stream.summaries(rec, threshold);
        let mut episodes = 0u64;
        let mut diagnoses = Vec::new();
        for d in crate::analysis::diagnosis::for_loops(&summaries, rec) {
            let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut v {
                map.insert("loop".into(), json!(d.loop_index));
            }
            diagnoses.push(v);
        }
        for (i, s) in summaries.iter().enumerate() {
            let written = self.cursor(i).windows;
            // The summary's windows start at the loop's first.
            let first = stream.loop_stream(i).map_or(0, |l| l.first_window());
            for (j, w) in s.windows.iter().enumerate() {
                let k = first + j;
                if k >= written {
                    out.push(self.second_line(i, k, w, &stream.opts));
                }
            }
            self.cursor(i).windows = (first + s.windows.len()).max(written);
            for e in s.episodes.iter().filter(|e| e.ongoing) {
                out.push(episode_line(e));
            }
            episodes += self.cursor(i).episodes + s.episodes.iter().filter(|e| e.ongoing).count() as u64;
        }
        out.push(line(json!({
            "type": "end",
            "reason": rec.end,
            "duration_s": rec.duration(),
            "samples": rec.total_samples(),
            "failed": rec.total_failures(),
            "episodes": episodes,
            "diagnoses": diagnoses,
        })));
        out
    }

    fn second_line(
        &mut self,
        i: usize,
        k: usize,
        w: &crate::analysis::metrics::Window,
        opts: &crate::analysis::stream::StreamOptions,
    ) -> String {
        let hi = opts.origin + (k + 1) as f64 * opts.window;
        let c = self.cursor(i);
        let mut failed = 0;
        while let Some(&(wk, n)) = c.failed.front() {
            if wk > k {
                break;
            }
            if wk == k {
                failed = n;
            }
            c.failed.pop_front();
        }
        while let Some(&(t, pending)) = c.tasks.front() {
            if t >= hi {
                break;
            }
            c.pending_tasks = Some(pending);
            c.tasks.pop_front();
        }
        line(json!({
            "type": "second",
            "loop": i,
            "start_s": round3(w.start_s),
            "samples": w.samples,
            "failed": failed,
            "busy_pct": round3(w.busy_pct),
            "lag_p99_ms": round3(w.lag_p99_ms),
            "lag_max_ms": round3(w.lag_max_ms),
            "ready_mean": round3(w.ready_mean),
            "ready_max": w.ready_max,
            "pending_tasks": c.pending_tasks,
        }))
    }
}

fn loop_line(rec: &Recording, i: usize) -> String {
    let m = &rec.loops[i];
    let mut v = json!({
        "type": "loop",
        "loop": i,
        "thread": { "native_id": m.native_id, "name": m.thread_name },
        "loop_class": m.loop_class,
    });
    // With --subprocesses: the process the loop runs in.
    if let (Some(p), Value::Object(map)) = (rec.process_of_loop(i as u16).and_then(|p| rec.processes.get(p as usize)), &mut v) {
        map.insert("pid".into(), json!(p.pid));
    }
    line(v)
}

fn episode_line(e: &Episode) -> String {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("type".into(), json!("episode"));
        map.insert("loop".into(), json!(e.loop_index));
        map.remove("loop_index");
    }
    line(v)
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// One line: compact JSON (no newline inside: strings have theirs escaped) and `\n`.
fn line(v: Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// A whole recording as lines (`render`): replayed as `record` writes them live (samples,
/// failed looks and task counts in time order, lines looked for every 0.1 s of the
/// recording), so both give the same lines in the same order.
pub fn whole(rec: &Recording, facts: &StartFacts) -> String {
    let threshold = facts.threshold_ms / 1e3;
    let mut stream = Stream::new(crate::analysis::stream::StreamOptions::for_recording(rec, threshold, 1.0));
    let mut feed = JsonlFeed::new();
    let mut out = String::new();
    let (mut f, mut c) = (0, 0);
    let mut last = f64::MIN;
    for s in &rec.samples {
        while let Some(x) = rec.failures.get(f).filter(|x| x.t <= s.t) {
            feed.failed(&stream, x);
            f += 1;
        }
        while let Some(x) = rec.task_counts.get(c).filter(|x| x.t <= s.t) {
            feed.tasks(x);
            c += 1;
        }
        stream.push(rec, s);
        if s.t - last >= 0.1 {
            last = s.t;
            out.extend(feed.lines(rec, &stream, facts));
        }
    }
    for x in rec.failures.get(f..).unwrap_or(&[]) {
        feed.failed(&stream, x);
    }
    for x in rec.task_counts.get(c..).unwrap_or(&[]) {
        feed.tasks(x);
    }
    out.extend(feed.finish(rec, &stream, facts));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::metrics::{analyze, tests::script, Options};
    use crate::analysis::stream::StreamOptions;

    fn facts() -> StartFacts {
        StartFacts {
            pid: 1,
            command: vec!["python3".into(), "a\nb\x1b[2J".into()],
            python: "3.12.1".into(),
            rate_hz: 100.0,
            threshold_ms: 50.0,
        }
    }

    fn parse(text: &str) -> Vec<Value> {
        assert!(text.ends_with('\n'));
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    #[test]
    fn whole_lines_agree_with_the_analysis() {
        let mut rec =
            script(100.0, &format!("{}{}{}{}{}", ".".repeat(70), "a".repeat(20), "?.".repeat(40), "s".repeat(12), ".".repeat(150)));
        rec.end = crate::capture::recording::EndReason::Duration;
        let lines = parse(&whole(&rec, &facts()));
        let a = analyze(&rec, &Options { threshold: 0.05, ..Options::default() });
        assert_eq!(lines[0]["type"], "start");
        assert_eq!(lines[0]["command"][1], "a\nb\u{1b}[2J");
        assert_eq!(lines[1]["type"], "loop");
        let eps: Vec<&Value> = lines.iter().filter(|l| l["type"] == "episode").collect();
        assert_eq!(eps.len(), a.loops[0].episodes.len());
        assert_eq!(eps.len(), 2);
        for (l, e) in eps.iter().zip(&a.loops[0].episodes) {
            assert_eq!(l["function"], e.function.as_str());
            assert_eq!(l["loop"], 0);
            assert!((l["duration_ms"].as_f64().unwrap() - e.duration_ms).abs() < 1e-9);
        }
        let secs: Vec<&Value> = lines.iter().filter(|l| l["type"] == "second").collect();
        assert_eq!(secs.len(), a.loops[0].windows.len());
        assert_eq!(secs.iter().map(|s| s["samples"].as_u64().unwrap()).sum::<u64>(), rec.samples.len() as u64);
        let end = lines.last().unwrap();
        assert_eq!(end["type"], "end");
        assert_eq!(end["episodes"], 2);
        assert_eq!(end["reason"], "duration");
    }

    /// Lines looked for after every sample or only at the end: the same lines.
    #[test]
    fn lines_do_not_depend_on_when_they_are_asked_for() {
        let rec = script(100.0, &format!("{}{}{}", ".".repeat(50), "b".repeat(30), ".".repeat(250)));
        let mut stream = Stream::new(StreamOptions::for_recording(&rec, 0.05, 1.0));
        let mut feed = JsonlFeed::new();
        let mut every = Vec::new();
        for s in &rec.samples {
            stream.push(&rec, s);
            every.extend(feed.lines(&rec, &stream, &facts()));
        }
        every.extend(feed.finish(&rec, &stream, &facts()));
        assert!(feed.finish(&rec, &stream, &facts()).is_empty(), "nothing after the end line");
        let mut sorted_every = every.clone();
        sorted_every.sort();
        let mut once: Vec<String> = whole(&rec, &facts()).lines().map(|l| format!("{l}\n")).collect();
        once.sort();
        assert_eq!(sorted_every, once);
        // An episode's line comes once it ended, before the seconds after it.
        let ep = every.iter().position(|l| l.contains("\"episode\"")).unwrap();
        let later_seconds = every[ep..].iter().filter(|l| l.contains("\"second\"")).count();
        assert!(later_seconds >= 2, "{every:#?}");
    }

    /// A loop that appears late (a thread starting its loop 50 s in) has seconds from its
    /// first on, in the lines and in the figures: no padding from the recording's start.
    #[test]
    fn a_late_loop_starts_at_its_first_second() {
        let mut rec = script(100.0, &".".repeat(6000));
        let mut second = rec.loops[0].clone();
        second.native_id = Some(2);
        rec.loops.push(second);
        let late: Vec<crate::capture::recording::Sample> = rec
            .samples
            .iter()
            .filter(|s| s.t >= 150.0)
            .map(|s| crate::capture::recording::Sample { loop_index: 1, t: s.t + 0.001, ..*s })
            .collect();
        rec.samples.extend(late);
        rec.samples.sort_by(|a, b| a.t.total_cmp(&b.t));
        let stream = Stream::over(&rec, StreamOptions::for_recording(&rec, 0.05, 1.0));
        let summaries = stream.summaries(&rec, 0.05);
        assert_eq!(summaries[0].windows.len(), 60);
        assert_eq!(summaries[1].windows.len(), 10, "{:?}", summaries[1].windows.first());
        assert_eq!(summaries[1].windows[0].start_s, 50.0);
        let lines = parse(&whole(&rec, &facts()));
        let late_seconds: Vec<&Value> = lines.iter().filter(|l| l["type"] == "second" && l["loop"] == 1).collect();
        assert_eq!(late_seconds.len(), 10);
        assert_eq!(late_seconds[0]["start_s"], 50.0);
        assert!(late_seconds.iter().all(|l| l["samples"].as_u64().unwrap() > 0));
    }
}
