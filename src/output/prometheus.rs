//! The Prometheus text exposition format (version 0.0.4) for `loopspy serve`: the figures of
//! each target and loop as metric families, and what those figures accumulate (a lag
//! histogram with fixed buckets, blocked time per blamed function under a cap on how many
//! functions get a label of their own). Pure: no clocks, no I/O.
//!
//! Label values come from the target (function names) and are untrusted: they are made
//! visible first ([`crate::base::escape::terminal`]: control characters as `\x1b`, `\n`...,
//! backslashes doubled), cut to [`MAX_LABEL_CHARS`], then escaped as the format asks
//! (backslash, double quote, line feed), so no name can end a label, a line or a sample.

use std::fmt::Write;

use crate::base::escape;

/// Upper bounds of the lag histogram's buckets (seconds); `+Inf` follows.
pub const LAG_BOUNDS_S: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Functions that get a `function` label of their own, per loop (the first seen); the
/// others are counted under [`OTHER_FUNCTION`].
pub const MAX_FUNCTIONS: usize = 20;
/// The `function` label of blocked time beyond the first [`MAX_FUNCTIONS`] functions (not
/// a Python identifier, so no function is mistaken for it).
pub const OTHER_FUNCTION: &str = "(other)";
/// Longest label value (characters, after escaping for visibility); longer ones end in `…`.
pub const MAX_LABEL_CHARS: usize = 200;

/// A label value as the exposition format carries it (without the quotes).
pub fn label_value(raw: &str) -> String {
    let visible = escape::terminal(raw);
    let mut cut: String = visible.chars().take(MAX_LABEL_CHARS).collect();
    if cut.len() < visible.len() {
        cut.push('…');
    }
    let mut out = String::with_capacity(cut.len() + 2);
    for c in cut.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A number as the format writes it (`+Inf`, `-Inf`, `NaN` for the non-finite).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Loop lag observations in the fixed buckets of [`LAG_BOUNDS_S`] (not cumulative here).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LagBuckets {
    /// One count per bound, then the count above the last bound.
    counts: Vec<u64>,
    pub count: u64,
    pub sum_s: f64,
}

impl LagBuckets {
    pub fn add(&mut self, seconds: f64) {
        let s = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
        if self.counts.is_empty() {
            self.counts = vec![0; LAG_BOUNDS_S.len() + 1];
        }
        let i = LAG_BOUNDS_S.iter().position(|b| s <= *b).unwrap_or(LAG_BOUNDS_S.len());
        self.counts[i] += 1;
        self.count += 1;
        self.sum_s += s;
    }

    /// `(bound, observations at or under it)` for every bound, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut seen = 0;
        let mut out = Vec::with_capacity(LAG_BOUNDS_S.len() + 1);
        for (i, b) in LAG_BOUNDS_S.iter().chain([f64::INFINITY].iter()).enumerate() {
            seen += self.counts.get(i).copied().unwrap_or(0);
            out.push((*b, seen));
        }
        out
    }
}

/// Blocking episodes and their time per blamed function, under a cap on the number of
/// functions with a label of their own: the first [`MAX_FUNCTIONS`] seen keep theirs for
/// good (a counter never moves to another label), later ones go to [`OTHER_FUNCTION`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlameTotals {
    /// `(function, episodes, seconds)`, first seen first; `other` apart.
    named: Vec<(String, u64, f64)>,
    other: Option<(u64, f64)>,
}

impl BlameTotals {
    pub fn add(&mut self, function: &str, seconds: f64) {
        let seconds = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
        if let Some(e) = self.named.iter_mut().find(|e| e.0 == function) {
            e.1 += 1;
            e.2 += seconds;
        } else if self.named.len() < MAX_FUNCTIONS {
            self.named.push((function.to_string(), 1, seconds));
        } else {
            let o = self.other.get_or_insert((0, 0.0));
            o.0 += 1;
            o.1 += seconds;
        }
    }

    /// `(function label, episodes, seconds)`, the named first.
    pub fn rows(&self) -> Vec<(&str, u64, f64)> {
        let mut out: Vec<(&str, u64, f64)> = self.named.iter().map(|(f, n, s)| (f.as_str(), *n, *s)).collect();
        if let Some((n, s)) = self.other {
            out.push((OTHER_FUNCTION, n, s));
        }
        out
    }
}

/// What is served about one event loop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoopFigures {
    /// The loop thread's id (as the target sees it), `?` when unknown.
    pub thread: String,
    /// The loop's class (`_UnixSelectorEventLoop`, `uvloop.Loop`).
    pub loop_class: String,
    pub lag: LagBuckets,
    /// Callbacks in the ready queue at the last sample.
    pub ready: u64,
    /// Share of the recent wall time (see [`crate::output::prometheus`]'s docs) spent outside
    /// select, 0 to 1.
    pub busy_ratio: f64,
    pub select_seconds: f64,
    pub blame: BlameTotals,
    /// Pending tasks at the last count (`None`: not counted yet).
    pub pending_tasks: Option<u64>,
}

/// What is served about one target process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetFigures {
    /// How the user named it: `pid 4242`, `pid-file /run/app.pid`, `match app.py`.
    pub target: String,
    /// `None` while no process is known (a PID file not written yet, nothing matching).
    pub pid: Option<i32>,
    pub up: bool,
    pub samples: u64,
    pub failed: u64,
    pub loops: Vec<LoopFigures>,
}

/// A loop's value in a family (`None`: no sample).
type LoopValue<'a> = &'a dyn Fn(&LoopFigures) -> Option<f64>;
/// A target's value in a family.
type TargetValue<'a> = &'a dyn Fn(&TargetFigures) -> f64;

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn start<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// The exposition of every target: one family per metric, every sample of it together.
pub fn exposition(targets: &[TargetFigures]) -> String {
    let mut out = String::new();
    let pid_label = |t: &TargetFigures| t.pid.map(|p| p.to_string()).unwrap_or_default();
    // Per loop of every live target: (pid, thread, loop, figures).
    let loops: Vec<(String, &LoopFigures)> =
        targets.iter().filter(|t| t.up).flat_map(|t| t.loops.iter().map(move |l| (pid_label(t), l))).collect();
    let ids = |pid: &str, l: &LoopFigures| -> [(&'static str, String); 3] {
        [("pid", pid.to_string()), ("thread", l.thread.clone()), ("loop", l.loop_class.clone())]
    };

    let mut f =
        Family::start(&mut out, "event_loop_lag_seconds", "histogram", "How late the most overdue timer of the loop was, per sample.");
    for (pid, l) in &loops {
        let id = ids(pid, l);
        for (bound, n) in l.lag.cumulative() {
            let le = number(bound);
            let labels: Vec<(&str, &str)> = id.iter().map(|(k, v)| (*k, v.as_str())).chain([("le", le.as_str())]).collect();
            f.sample("event_loop_lag_seconds_bucket", &labels, n as f64);
        }
        let labels: Vec<(&str, &str)> = id.iter().map(|(k, v)| (*k, v.as_str())).collect();
        f.sample("event_loop_lag_seconds_sum", &labels, l.lag.sum_s);
        f.sample("event_loop_lag_seconds_count", &labels, l.lag.count as f64);
    }

    let simple: [(&str, &str, &str, LoopValue); 4] = [
        ("event_loop_ready_callbacks", "gauge", "Callbacks in the loop's ready queue at the last sample.", &|l| Some(l.ready as f64)),
        (
            "event_loop_busy_ratio",
            "gauge",
            "Share of the last 10 seconds the loop spent outside select (running callbacks or its own work), 0 to 1.",
            &|l| Some(l.busy_ratio),
        ),
        ("event_loop_select_seconds_total", "counter", "Seconds the loop spent waiting in select (idle).", &|l| Some(l.select_seconds)),
        ("asyncio_pending_tasks", "gauge", "Tasks of the loop not done yet, at the last count (about once a second).", &|l| {
            l.pending_tasks.map(|n| n as f64)
        }),
    ];
    for (name, kind, help, get) in simple {
        let mut f = Family::start(&mut out, name, kind, help);
        for (pid, l) in &loops {
            if let Some(v) = get(l) {
                let id = ids(pid, l);
                let labels: Vec<(&str, &str)> = id.iter().map(|(k, v)| (*k, v.as_str())).collect();
                f.sample(name, &labels, v);
            }
        }
    }

    for (name, help, episodes) in [
        (
            "event_loop_blocking_episodes_total",
            "Blocking episodes that ended (a callback kept the loop busy at least the threshold), by the function blamed.",
            true,
        ),
        ("event_loop_blocked_seconds_total", "Seconds of blocking episodes that ended, by the function blamed.", false),
    ] {
        let mut f = Family::start(&mut out, name, "counter", help);
        for (pid, l) in &loops {
            let id = ids(pid, l);
            for (function, n, seconds) in l.blame.rows() {
                let labels: Vec<(&str, &str)> = id.iter().map(|(k, v)| (*k, v.as_str())).chain([("function", function)]).collect();
                f.sample(name, &labels, if episodes { n as f64 } else { seconds });
            }
        }
    }

    let own: [(&str, &str, &str, TargetValue); 3] = [
        ("loopspy_samples_total", "counter", "Samples loopspy took of the target's loops.", &|t| t.samples as f64),
        (
            "loopspy_failed_samples_total",
            "counter",
            "Looks at a loop that could not be read consistently (not counted as samples).",
            &|t| t.failed as f64,
        ),
        ("loopspy_up", "gauge", "1 while loopspy samples the target, 0 when it exited or cannot be read.", &|t| {
            if t.up {
                1.0
            } else {
                0.0
            }
        }),
    ];
    for (name, kind, help, get) in own {
        let mut f = Family::start(&mut out, name, kind, help);
        for t in targets {
            let pid = pid_label(t);
            f.sample(name, &[("target", t.target.as_str()), ("pid", pid.as_str())], get(t));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_out() {
        assert_eq!(label_value("plain"), "plain");
        assert_eq!(label_value("a\"b"), "a\\\"b");
        // A backslash is doubled to stay visible, then escaped: four on the wire.
        assert_eq!(label_value("a\\b"), "a\\\\\\\\b");
        // A newline becomes the visible `\n`, whose backslash is then escaped.
        assert_eq!(label_value("a\nb"), "a\\\\nb");
        assert!(!label_value("\x1b[2J\r\0").chars().any(|c| c.is_control()));
        let long = label_value(&"x".repeat(10_000));
        assert_eq!(long.chars().count(), MAX_LABEL_CHARS + 1);
    }

    #[test]
    fn lag_buckets_are_cumulative_and_end_in_inf() {
        let mut l = LagBuckets::default();
        for s in [0.0, 0.001, 0.002, 0.3, 20.0, f64::NAN] {
            l.add(s);
        }
        let c = l.cumulative();
        assert_eq!(c.len(), LAG_BOUNDS_S.len() + 1);
        assert_eq!(c[0], (0.001, 3)); // 0, NaN as 0, and 0.001 (bounds are inclusive)
        assert_eq!(c[1], (0.0025, 4));
        assert_eq!(c.last().copied(), Some((f64::INFINITY, 6)));
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(l.count, 6);
        assert!((l.sum_s - 20.303).abs() < 1e-9);
    }

    #[test]
    fn functions_beyond_the_cap_share_one_label_and_never_move() {
        let mut b = BlameTotals::default();
        for i in 0..MAX_FUNCTIONS + 5 {
            b.add(&format!("f{i}"), 0.5);
        }
        b.add("f0", 1.0);
        b.add(&format!("f{}", MAX_FUNCTIONS + 1), 0.25);
        let rows = b.rows();
        assert_eq!(rows.len(), MAX_FUNCTIONS + 1);
        assert_eq!(rows[0], ("f0", 2, 1.5));
        assert_eq!(rows.last().copied(), Some((OTHER_FUNCTION, 6, 2.75)));
    }

    #[test]
    fn exposition_groups_families_and_labels_every_sample() {
        let mut lag = LagBuckets::default();
        lag.add(0.2);
        let mut blame = BlameTotals::default();
        blame.add("slow \"q\"\n", 0.3);
        let t = TargetFigures {
            target: "pid 7".into(),
            pid: Some(7),
            up: true,
            samples: 10,
            failed: 1,
            loops: vec![LoopFigures {
                thread: "7".into(),
                loop_class: "_UnixSelectorEventLoop".into(),
                lag,
                ready: 2,
                busy_ratio: 0.25,
                select_seconds: 1.5,
                blame,
                pending_tasks: Some(3),
            }],
        };
        let down = TargetFigures { target: "pid-file /run/x.pid".into(), ..TargetFigures::default() };
        let text = exposition(&[t, down]);
        assert!(text.contains("event_loop_lag_seconds_bucket{pid=\"7\",thread=\"7\",loop=\"_UnixSelectorEventLoop\",le=\"0.25\"} 1\n"));
        assert!(text.contains("event_loop_lag_seconds_bucket{pid=\"7\",thread=\"7\",loop=\"_UnixSelectorEventLoop\",le=\"+Inf\"} 1\n"));
        assert!(text.contains(",function=\"slow \\\"q\\\"\\\\n\"} 0.3\n"), "{text}");
        assert!(text.contains("loopspy_up{target=\"pid 7\",pid=\"7\"} 1\n"));
        assert!(text.contains("loopspy_up{target=\"pid-file /run/x.pid\",pid=\"\"} 0\n"));
        assert!(text.contains("asyncio_pending_tasks{pid=\"7\",thread=\"7\",loop=\"_UnixSelectorEventLoop\"} 3\n"));
        // Every family once, its samples right after it.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        assert_eq!(types.len(), 10);
        let mut seen = std::collections::BTreeSet::new();
        for t in &types {
            assert!(seen.insert(t.split(' ').nth(2).unwrap()), "{t} twice");
        }
        assert!(text
            .lines()
            .all(|l| l.starts_with('#') || l.rsplit_once(' ').is_some_and(|(_, v)| v.parse::<f64>().is_ok() || v == "+Inf")));
    }
}
