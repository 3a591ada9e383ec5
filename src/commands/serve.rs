//! `loopspy serve`: sample one or more processes at a low rate, for days, and serve their
//! loops' figures over HTTP in the Prometheus text format.
//!
//! One thread samples every target in turn at `--rate` and feeds each sample to a live
//! [`Stream`] (the figures `record` and `top` compute, in memory that does not grow), then
//! drops it: only running totals are kept (a lag histogram with fixed buckets, blocked time per
//! blamed function under a label cap, select seconds). Every [`PUBLISH_EVERY`] seconds it
//! publishes the figures; a second thread answers `GET /metrics` from the last ones
//! (`std::net`: one small request at a time needs no HTTP crate).
//!
//! Targets: a fixed `--pid`; `--pid-file` (the PID read again every [`RESOLVE_EVERY`]
//! seconds) and `--match` (every process whose command line contains the pattern). A target
//! that exits is served as `loopspy_up 0`; a new process named by the file or the pattern is
//! attached when it appears, and replaces the old one's series. With `--subprocesses` each
//! process found stands for itself and its descendants: those that run a loop are served
//! (a gunicorn master without one is not reported down for ever), workers that start later
//! are picked up at the next look, and a worker that exits leaves the metrics.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::analysis::stream::{Stream, StreamOptions};
use crate::base::error::Failure;
use crate::base::escape;
use crate::capture::recording::Recording;
use crate::capture::sampler::{SampleError, Sampler, SamplerOptions};
use crate::capture::task_counter::TaskCounter;
use crate::cli::config::{ServeConfig, ServeTarget};
use crate::output::prometheus::{self, BlameTotals, LagBuckets, LoopFigures, TargetFigures};
use crate::process::procfs;
use crate::python::target::{AttachOptions, Target};

/// How often PID files are read again and command lines matched again, and a target that
/// could not be attached is tried again (seconds).
const RESOLVE_EVERY: f64 = 2.0;
/// A process that is not Python (a shell that matched the pattern) is tried again this late.
const NOT_PYTHON_RETRY: f64 = 30.0;
/// How often the figures served are brought up to date (seconds).
const PUBLISH_EVERY: f64 = 0.25;
/// `event_loop_busy_ratio` covers this many seconds.
const BUSY_WINDOW: f64 = 10.0;
/// Episodes the stream keeps per loop: at most one ends per sample, and they are counted
/// at every sample.
const MAX_EPISODES: usize = 16;
/// Distinct stacks, frames and task names kept before the recording's tables start afresh
/// (a service naming every task differently would grow them for ever).
const INTERNED_LIMIT: usize = 50_000;
/// Processes one `--match` follows at most.
const MAX_MATCHED: usize = 64;
/// Processes one target with `--subprocesses` follows at most.
const MAX_TREE: usize = 256;
/// A process without an event loop is looked at again after [`RESOLVE_EVERY`], doubling
/// up to this (a gunicorn master never gets one; each look is an attach).
const NO_LOOP_RETRY_MAX: f64 = 30.0;

/// Running totals of one loop, kept across the stream's fresh starts.
#[derive(Debug, Default)]
struct LoopTotals {
    lag: LagBuckets,
    blame: BlameTotals,
    /// Episodes of the current stream already counted.
    episodes_seen: u64,
    /// Wall, busy and select seconds of streams before the current one.
    base: (f64, f64, f64),
    /// The select seconds served last (a counter never goes down).
    select_total: f64,
    /// `(time, wall, busy)` at each publication over the last [`BUSY_WINDOW`].
    history: VecDeque<(f64, f64, f64)>,
    busy_ratio: f64,
    pending: Option<u64>,
}

/// One attached process.
struct Monitor {
    sampler: Sampler,
    rec: Recording,
    stream: Stream,
    tasks: TaskCounter,
    loops: Vec<LoopTotals>,
    opts: StreamOptions,
    threshold: f64,
}

impl Monitor {
    fn new(sampler: Sampler, metas: Vec<crate::capture::recording::LoopMeta>, rate_hz: f64, threshold: f64) -> Monitor {
        let start = sampler.now();
        let rec = Recording::new(rate_hz, metas, start);
        let opts = StreamOptions {
            keep_threshold: threshold,
            window: 0.0,
            origin: start,
            interval: 1.0 / rate_hz,
            started: start,
            since: f64::MIN,
            max_episodes: Some(MAX_EPISODES),
            fold: false,
            max_windows: None,
            max_listed: None,
        };
        Monitor { sampler, rec, stream: Stream::new(opts), tasks: TaskCounter::new(), loops: Vec::new(), opts, threshold }
    }

    /// Take one sample of every loop and fold it into the totals; `false` once the target
    /// is gone (it exited, or ran exec).
    fn tick(&mut self, samples: &mut u64, failed: &mut u64) -> bool {
        let now = self.sampler.now();
        let alive = match self.sampler.sample(&mut self.rec, 0.5 * self.opts.interval) {
            Ok(()) | Err(SampleError::Failed) => true,
            Err(SampleError::Exited) | Err(SampleError::Exec) => false,
        };
        self.track_loops();
        let taken = std::mem::take(&mut self.rec.samples);
        for s in &taken {
            self.stream.push(&self.rec, s);
            if let (Some(ms), Some(l)) = (s.lag_ms(), self.loops.get_mut(s.loop_index as usize)) {
                l.lag.add(ms / 1e3);
            }
        }
        *samples += taken.len() as u64;
        // The vector's room is kept, its samples are not.
        self.rec.samples = taken;
        self.rec.samples.clear();
        *failed += self.rec.failures.len() as u64;
        self.rec.failures.clear();
        self.rec.other_threads.clear();
        self.rec.ended = now;
        if alive && self.tasks.due(now) {
            let loops = self.sampler.loop_addresses();
            // A failed count is skipped; the next one comes at the usual time.
            let _ = self.tasks.count(&self.sampler.target, &loops, now, &mut self.rec);
            for c in self.rec.task_counts.drain(..) {
                if let Some(l) = self.loops.get_mut(c.loop_index as usize) {
                    l.pending = Some(c.counts.pending as u64);
                }
            }
        }
        // Episodes that ended since the last sample, counted once each.
        for (i, totals) in self.loops.iter_mut().enumerate() {
            let Some(ls) = self.stream.loop_stream(i) else { continue };
            let recent = ls.recent();
            let total = ls.ended_total();
            let new = total.saturating_sub(totals.episodes_seen) as usize;
            for e in recent.iter().skip(recent.len().saturating_sub(new)) {
                totals.blame.add(&e.function, e.duration_ms / 1e3);
            }
            totals.episodes_seen = total;
        }
        // Task names not used for a minute are let go of (a task per request, named by
        // asyncio `Task-N`, is a new name each time); stacks and frames are few.
        let forget = now - 60.0;
        self.rec.tasks.forget_unused_before(forget, crate::capture::recording::KEEP_NAMES);
        self.rec.threads.forget_unused_before(forget, crate::capture::recording::KEEP_NAMES);
        if self.rec.tasks.held() + self.rec.stacks.len() + self.rec.frames.len() > INTERNED_LIMIT {
            self.start_afresh(now);
        }
        alive
    }

    /// Totals for every loop the recording knows (loops found since are added).
    fn track_loops(&mut self) {
        while self.loops.len() < self.rec.loops.len() {
            self.loops.push(LoopTotals::default());
        }
    }

    /// Forget the interned names and start a new stream, keeping the totals (a run in
    /// progress is lost: at worst one episode not counted).
    fn start_afresh(&mut self, now: f64) {
        for (i, s) in self.stream.summaries(&self.rec, self.threshold).iter().enumerate() {
            if let Some(l) = self.loops.get_mut(i) {
                let (w, b, sel) = shares(s);
                l.base = (l.base.0 + w, l.base.1 + b, l.base.2 + sel);
                l.episodes_seen = 0;
            }
        }
        let loops = self.rec.loops.clone();
        self.rec = Recording::new(self.rec.rate_hz, loops, now);
        self.opts.origin = now;
        self.opts.started = now;
        self.stream = Stream::new(self.opts);
    }

    /// The figures now, per loop.
    fn figures(&mut self) -> Vec<LoopFigures> {
        self.track_loops();
        let now = self.rec.ended;
        let summaries = self.stream.summaries(&self.rec, self.threshold);
        let mut out = Vec::new();
        for (i, meta) in self.rec.loops.iter().enumerate() {
            let Some(l) = self.loops.get_mut(i) else { continue };
            let (w, b, sel) = summaries.get(i).map(shares).unwrap_or_default();
            let (wall, busy, select) = (l.base.0 + w, l.base.1 + b, l.base.2 + sel);
            l.select_total = l.select_total.max(select);
            l.history.push_back((now, wall, busy));
            while l.history.len() > 1 && l.history.front().is_some_and(|h| h.0 < now - BUSY_WINDOW) {
                l.history.pop_front();
            }
            let (_, w0, b0) = l.history.front().copied().unwrap_or_default();
            l.busy_ratio = if wall - w0 > 0.0 {
                ((busy - b0) / (wall - w0)).clamp(0.0, 1.0)
            } else if wall > 0.0 {
                (busy / wall).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let ready = self.stream.loop_stream(i).and_then(|s| s.last()).map(|s| s.ready as u64).unwrap_or(0);
            out.push(LoopFigures {
                thread: meta.native_id.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                loop_class: meta.loop_class.clone(),
                lag: l.lag.clone(),
                ready,
                busy_ratio: l.busy_ratio,
                select_seconds: l.select_total,
                blame: l.blame.clone(),
                pending_tasks: l.pending,
            });
        }
        out
    }
}

/// `(wall, busy, select)` seconds of a loop's summary.
fn shares(s: &crate::analysis::metrics::LoopSummary) -> (f64, f64, f64) {
    (s.wall_s, s.wall_s * s.busy_pct / 100.0, s.wall_s * s.select_pct / 100.0)
}

/// A process a target names, attached or not.
struct Entry {
    pid: i32,
    monitor: Option<Monitor>,
    samples: u64,
    failed: u64,
    /// It exited (or its PID does not exist): not attached again.
    gone: bool,
    /// Not a Python process: left out of the metrics (a shell that matched the pattern).
    not_python: bool,
    retry_at: f64,
    /// The kind of the last failure said, so that it is said once.
    said: Option<&'static str>,
    /// Looks in a row that found no event loop.
    no_loop: u32,
    /// Figures of its loops at the last publication (served while it is attached; once it
    /// exited only its `loopspy_*` series stay).
    loops: Vec<LoopFigures>,
}

impl Entry {
    fn new(pid: i32) -> Entry {
        Entry {
            pid,
            monitor: None,
            samples: 0,
            failed: 0,
            gone: false,
            not_python: false,
            retry_at: f64::MIN,
            said: None,
            no_loop: 0,
            loops: Vec::new(),
        }
    }
}

/// One target as the user gave it, and the processes it names now.
struct Watch {
    how: ServeTarget,
    label: String,
    /// Each process named and its descendants (`--subprocesses`).
    tree: bool,
    entries: Vec<Entry>,
}

fn label_of(t: &ServeTarget) -> String {
    match t {
        ServeTarget::Pid(p) => format!("pid {p}"),
        ServeTarget::PidFile(p) => format!("pid-file {}", p.display()),
        ServeTarget::Match(m) => format!("match {m}"),
    }
}

/// The PID a PID file holds (the first word), if it holds one.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text[..text.len().min(64)]).into_owned();
    text.split_whitespace().next()?.parse::<i32>().ok().filter(|p| *p > 0)
}

/// Each of `pids` followed by its live descendants (not `me`), without repeats, at most
/// [`MAX_TREE`].
fn with_descendants(pids: &[i32], me: i32) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    for &p in pids {
        for q in std::iter::once(p).chain(procfs::descendants(p)) {
            if q != me && !out.contains(&q) && !procfs::is_dead(q) && out.len() < MAX_TREE {
                out.push(q);
            }
        }
    }
    out
}

/// Live processes (not `me`) whose command line, its words joined by spaces, contains
/// `pattern`; at most [`MAX_MATCHED`], lowest PID first.
fn matching(pattern: &str, me: i32) -> Vec<i32> {
    procfs::pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter(|p| procfs::cmdline(*p).is_ok_and(|argv| !argv.is_empty() && argv.join(" ").contains(pattern)))
        .filter(|p| !procfs::is_dead(*p))
        .take(MAX_MATCHED)
        .collect()
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "loopspy: {line}");
}

impl Watch {
    /// Which processes it names now (PID files and patterns looked at again).
    fn resolve(&mut self, me: i32) {
        let found: Vec<i32> = match &self.how {
            ServeTarget::Pid(p) => vec![*p],
            ServeTarget::PidFile(path) => read_pid_file(path).into_iter().collect(),
            ServeTarget::Match(pattern) => matching(pattern, me),
        };
        let found = if self.tree { with_descendants(&found, me) } else { found };
        if found.is_empty() {
            // Nothing named now: what was followed stays (served as down once it exited).
            return;
        }
        let mut kept: Vec<Entry> = Vec::new();
        for pid in found {
            match self.entries.iter().position(|e| e.pid == pid) {
                Some(i) => kept.push(self.entries.swap_remove(i)),
                None => kept.push(Entry::new(pid)),
            }
        }
        for old in &self.entries {
            if old.monitor.is_some() || !old.gone {
                continue;
            }
            say(&format!(
                "{}: process {} replaced by {}",
                escape::terminal(&self.label),
                old.pid,
                kept.iter().map(|e| e.pid.to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        self.entries = kept;
    }

    /// Attach what is not attached yet (when due). A failure of a fixed `--pid` at the
    /// start that cannot pass (no such process, permission...) is returned.
    fn attach(&mut self, now: f64, cfg: &ServeConfig, first: bool) -> Result<(), Failure> {
        for e in &mut self.entries {
            if e.monitor.is_some() || e.gone || now < e.retry_at {
                continue;
            }
            let attached = Target::attach(e.pid, AttachOptions { blocking: false })
                .and_then(|t| Sampler::start(t, SamplerOptions::default()))
                .map(|(sampler, metas)| (sampler.target.version_text.clone(), Monitor::new(sampler, metas, cfg.rate_hz, cfg.threshold)));
            match attached {
                Ok((version, m)) => {
                    say(&format!(
                        "{}: sampling process {} (Python {}, {} loop(s))",
                        escape::terminal(&self.label),
                        e.pid,
                        escape::terminal(&version),
                        m.rec.loops.len()
                    ));
                    e.monitor = Some(m);
                    e.not_python = false;
                    e.said = None;
                    e.no_loop = 0;
                }
                Err(f) => {
                    let waits = matches!(f, Failure::NoEventLoop { .. } | Failure::Unreadable { .. });
                    // Only the process given is an error at the start, not a descendant.
                    if first && matches!(self.how, ServeTarget::Pid(p) if p == e.pid) && !waits {
                        return Err(f);
                    }
                    e.gone = matches!(f, Failure::NoSuchProcess { .. } | Failure::TargetExited { .. });
                    e.not_python = matches!(f, Failure::NotPython { .. });
                    let no_loop = matches!(f, Failure::NoEventLoop { .. });
                    e.no_loop = if no_loop { e.no_loop.saturating_add(1) } else { 0 };
                    e.retry_at = now
                        + if e.not_python {
                            NOT_PYTHON_RETRY
                        } else if no_loop {
                            (RESOLVE_EVERY * 2f64.powi(e.no_loop.min(8) as i32 - 1)).min(NO_LOOP_RETRY_MAX)
                        } else {
                            RESOLVE_EVERY
                        };
                    // A shell that matched the pattern, a process of the tree that is not
                    // Python or runs no loop (a gunicorn master) is not worth a message.
                    let quiet = (e.not_python && (self.tree || matches!(self.how, ServeTarget::Match(_))))
                        || (self.tree && no_loop && e.no_loop > 1);
                    if e.said != Some(f.kind()) && !quiet {
                        say(&format!("{}: process {}: {f}", escape::terminal(&self.label), e.pid));
                    }
                    e.said = Some(f.kind());
                }
            }
        }
        Ok(())
    }

    fn figures(&mut self) -> Vec<TargetFigures> {
        let mut out = Vec::new();
        for e in &mut self.entries {
            if e.not_python && (self.tree || matches!(self.how, ServeTarget::Match(_))) {
                continue;
            }
            // A process of a tree is served while it runs a loop: a master without one, or
            // a worker not started yet, is not a target that is down.
            if self.tree && e.monitor.is_none() && e.samples == 0 {
                continue;
            }
            if let Some(m) = &mut e.monitor {
                e.loops = m.figures();
            }
            out.push(TargetFigures {
                target: self.label.clone(),
                pid: Some(e.pid),
                up: e.monitor.is_some(),
                samples: e.samples,
                failed: e.failed,
                loops: if e.monitor.is_some() { e.loops.clone() } else { Vec::new() },
            });
        }
        if out.is_empty() {
            // Nothing found yet (a PID file not written, nothing matching): down, no PID.
            out.push(TargetFigures { target: self.label.clone(), ..TargetFigures::default() });
        }
        out
    }
}

pub fn run(cfg: &ServeConfig) -> Result<(), Failure> {
    let stop = super::stop_flag();
    let listener =
        TcpListener::bind(cfg.listen).map_err(|e| Failure::ListenFailed { addr: cfg.listen.to_string(), detail: e.to_string() })?;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| cfg.listen.to_string());
    let me = std::process::id() as i32;
    let mut watches: Vec<Watch> =
        cfg.targets.iter().map(|t| Watch { label: label_of(t), how: t.clone(), tree: cfg.subprocesses, entries: Vec::new() }).collect();
    let now = procfs::monotonic_now();
    for w in &mut watches {
        w.resolve(me);
        w.attach(now, cfg, true)?;
    }
    let shared: Arc<Mutex<Vec<TargetFigures>>> = Arc::new(Mutex::new(watches.iter_mut().flat_map(|w| w.figures()).collect()));
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("loopspy-http".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let _ = answer(conn, &shared);
                }
            })
            .map_err(|e| Failure::ListenFailed { addr: addr.clone(), detail: e.to_string() })?;
    }
    say(&format!("serving http://{addr}/metrics ({} target(s), {} samples per second)", watches.len(), cfg.rate_hz));

    let period = 1.0 / cfg.rate_hz;
    let mut next = now;
    let mut next_resolve = now + RESOLVE_EVERY;
    let mut next_publish = now;
    loop {
        if let Some(signal) = stop.signal() {
            return Err(Failure::Signal { signal });
        }
        let now = procfs::monotonic_now();
        if now >= next_resolve {
            next_resolve = now + RESOLVE_EVERY;
            for w in &mut watches {
                if w.tree || !matches!(w.how, ServeTarget::Pid(_)) {
                    w.resolve(me);
                }
                let _ = w.attach(now, cfg, false);
            }
        }
        if now >= next {
            for w in &mut watches {
                let label = w.label.clone();
                for e in &mut w.entries {
                    let Some(m) = &mut e.monitor else { continue };
                    if !m.tick(&mut e.samples, &mut e.failed) {
                        say(&format!("{}: process {} exited (loopspy_up 0)", escape::terminal(&label), e.pid));
                        e.monitor = None;
                        e.gone = true;
                    }
                }
            }
            // A fixed schedule; behind (a busy machine), it does not burst to catch up.
            next += period;
            if next < now {
                next = now + period;
            }
        }
        if now >= next_publish {
            next_publish = now + PUBLISH_EVERY;
            let figures: Vec<TargetFigures> = watches.iter_mut().flat_map(|w| w.figures()).collect();
            *shared.lock().unwrap_or_else(|e| e.into_inner()) = figures;
        }
        let wait = (next.min(next_publish) - procfs::monotonic_now()).clamp(0.0, 0.05);
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
}

/// Answer one HTTP request: `GET /metrics` (and `HEAD`), a pointer at `/`, 404 or 405.
fn answer(mut conn: TcpStream, shared: &Mutex<Vec<TargetFigures>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split(' ');
    let method = words.next().unwrap_or("");
    let path = words.next().unwrap_or("").split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let figures = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", prometheus::exposition(&figures))
        }
        ("GET" | "HEAD", "/") => ("200 OK", "text/plain; charset=utf-8", "loopspy serve: the metrics are at /metrics\n".to_string()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain; charset=utf-8", "not found: the metrics are at /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET and HEAD\n".to_string()),
    };
    let mut response =
        format!("HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    conn.write_all(&response)?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_hold_a_positive_pid_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pid");
        for (text, want) in [("4242\n", Some(4242)), ("  17 extra", Some(17)), ("0", None), ("-3", None), ("abc", None), ("", None)] {
            std::fs::write(&p, text).unwrap();
            assert_eq!(read_pid_file(&p), want, "{text:?}");
        }
        assert_eq!(read_pid_file(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_pattern_matches_command_lines_but_never_ourselves() {
        let me = std::process::id() as i32;
        let own = procfs::cmdline(me).unwrap().join(" ");
        // Our own command line contains itself, yet we are left out.
        assert!(!matching(&own, me).contains(&me));
        // Our parent (cargo or nextest) is found by its own command line.
        let parent = std::os::unix::process::parent_id() as i32;
        let theirs = procfs::cmdline(parent).unwrap().join(" ");
        assert!(matching(&theirs, me).contains(&parent));
    }
}
