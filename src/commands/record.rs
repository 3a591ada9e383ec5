//! `loopspy record`: sample until the duration, Ctrl-C or the target's exit; then write the
//! file (always, with every sample taken) and a summary.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::{RecordArgs, RecordFormat};
use crate::error::Failure;
use crate::flamegraph::{self, Header};
use crate::metrics::{self, is_busy, Options};
use crate::procfs;
use crate::recording::{EndReason, Recording, Sample};
use crate::report::{self, duration_ms, TargetFacts};
use crate::sampler::{SampleError, Sampler, SamplerOptions};
use crate::task_counter::TaskCounter;
use crate::target::AttachOptions;

/// `20261122T031500Z`: UTC, from the system clock.
pub fn timestamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Counts blocking episodes as samples arrive, for the live status line (the final figures
/// come from [`metrics::analyze`]).
#[derive(Debug, Default)]
pub struct LiveEpisodes {
    threshold: f64,
    run: Option<(f64, Option<u64>, bool)>,
    last_t: Option<f64>,
    pub count: usize,
}

impl LiveEpisodes {
    pub fn new(threshold: f64) -> Self {
        LiveEpisodes { threshold, ..Default::default() }
    }

    pub fn feed(&mut self, s: &Sample) {
        if is_busy(s.state) {
            match &mut self.run {
                Some((start, key, counted)) if *key == s.callback => {
                    if !*counted && s.t - *start >= self.threshold {
                        *counted = true;
                        self.count += 1;
                    }
                }
                _ => {
                    let start = self.last_t.map(|l| (l + s.t) / 2.0).unwrap_or(s.t);
                    self.run = Some((start, s.callback, false));
                }
            }
        } else {
            self.run = None;
        }
        self.last_t = Some(s.t);
    }
}

/// Where one output goes, and in which format.
struct Output {
    path: Option<PathBuf>,
    format: RecordFormat,
}

impl Output {
    fn name(&self) -> String {
        self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "standard output".into())
    }
}

fn open_check(path: &Path) -> Result<(), Failure> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(|_| ())
        .map_err(|e| Failure::OutputFailed { path: path.display().to_string(), detail: e.to_string() })
}

pub fn run(args: &RecordArgs) -> Result<(), Failure> {
    // Output files must be writable before we spend minutes recording.
    let mut outputs: Vec<Output> = args
        .output
        .iter()
        .map(|p| Output {
            path: (p.as_os_str() != "-").then(|| p.clone()),
            format: RecordFormat::from_path(p).or(args.format).unwrap_or(RecordFormat::Svg),
        })
        .collect();
    for o in &outputs {
        if let Some(p) = &o.path {
            open_check(p)?;
        }
    }
    let stop = super::stop_flag();
    let options = AttachOptions { blocking: args.blocking };
    let (target, _spawned) = super::acquire(&args.target, &args.spawn, options, &stop)?;
    let pid = target.pid;
    let facts = TargetFacts {
        pid,
        command: procfs::cmdline(pid).unwrap_or_default(),
        python: target.version_text.clone(),
        layout: target.layout_check.clone(),
    };
    let cwd = procfs::cwd(pid).ok().map(|p| p.display().to_string());
    if outputs.is_empty() {
        let format = args.format.unwrap_or(RecordFormat::Svg);
        let p = PathBuf::from(format!("loopspy-{pid}-{}.{}", timestamp(), format.extension()));
        open_check(&p)?;
        outputs.push(Output { path: Some(p), format });
    }

    let (mut sampler, metas) = Sampler::start(target, SamplerOptions { all_threads: args.all_threads })?;
    let threshold = args.threshold / 1e3;
    let period = 1.0 / args.rate;
    let start = sampler.now();
    let mut rec = Recording::new(args.rate, metas, start);
    let deadline = args.duration.map(|d| start + d);
    let mut live = LiveEpisodes::new(threshold);
    let mut tasks = TaskCounter::new();
    let tty = std::io::stderr().is_terminal();
    let mut last_status = start;
    let mut next = start;
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break EndReason::Interrupted;
        }
        let now = sampler.now();
        if deadline.is_some_and(|d| now >= d) {
            break EndReason::Duration;
        }
        if now < next {
            std::thread::sleep(Duration::from_secs_f64((next - now).min(0.05)));
            continue;
        }
        let before = rec.samples.len();
        match sampler.sample(&mut rec, period / 2.0) {
            Ok(()) | Err(SampleError::Failed) => {}
            Err(SampleError::Exited) => break EndReason::TargetExited,
        }
        for s in &rec.samples[before..] {
            live.feed(s);
        }
        if tasks.due(now) {
            let loops = sampler.loop_addresses();
            // A failed count is skipped; the next one comes at the usual time.
            let _ = tasks.count(&sampler.target, &loops, now, &mut rec);
        }
        // Fixed schedule; if we fell behind (the machine was busy), do not burst to catch up.
        next += period;
        if next < now {
            next = now + period;
        }
        if now - last_status >= if tty { 0.25 } else { 5.0 } {
            last_status = now;
            status(&rec, &live, now - start, tty);
        }
    };
    if tty {
        eprint!("\r\x1b[K");
    }
    let last_t = rec.samples.last().map(|s| s.t).unwrap_or(start);
    rec.ended = match end {
        EndReason::Duration => deadline.unwrap_or(last_t),
        EndReason::TargetExited => last_t + period,
        _ => sampler.now(),
    }
    .max(start);
    rec.end = end;
    if end == EndReason::TargetExited {
        eprintln!("loopspy: process {pid} exited; writing what was recorded");
    }

    let analysis = metrics::analyze(&rec, &Options { threshold, ..Options::default() });
    let rep = report::build(facts, &rec, &analysis, args.blocking);
    let mut written = Vec::new();
    let mut failure = None;
    for o in &outputs {
        let bytes = render(o.format, &rec, &analysis, &rep, cwd.as_deref(), args.all_threads)?;
        let result = match &o.path {
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes).and_then(|_| out.flush())
            }
            Some(path) => std::fs::write(path, &bytes),
        };
        match result {
            Ok(()) => written.push(o.name()),
            Err(e) => {
                // Keep what was recorded: write it where we can, and say where.
                let fallback = std::env::temp_dir().join(format!("loopspy-{pid}-{}.{}", timestamp(), o.format.extension()));
                let detail = match std::fs::write(&fallback, &bytes) {
                    Ok(()) => format!("{e}; the recording was saved to {} instead", fallback.display()),
                    Err(e2) => format!("{e}; saving to {} failed too ({e2})", fallback.display()),
                };
                failure.get_or_insert(Failure::OutputFailed { path: o.name(), detail });
            }
        }
    }
    eprint!("{}", report::summary(&rep, &written));
    if let Some(f) = failure {
        return Err(f);
    }
    if rec.samples.is_empty() && end == EndReason::TargetExited {
        return Err(Failure::TargetExited { pid });
    }
    Ok(())
}

fn status(rec: &Recording, live: &LiveEpisodes, elapsed: f64, tty: bool) {
    let lag = rec.samples.last().and_then(|s| s.lateness).map(|l| (l as f64 * 1e3).max(0.0)).unwrap_or(0.0);
    let busy = rec.samples.iter().rev().take(rec.rate_hz as usize).filter(|s| is_busy(s.state)).count() as f64
        / rec.samples.len().clamp(1, rec.rate_hz.max(1.0) as usize) as f64;
    let pending = rec.task_counts.last().map(|c| format!(" | {} pending tasks", c.counts.pending)).unwrap_or_default();
    let line = format!(
        "loopspy: recording [{elapsed:.1} s] {} samples ({} failed) | lag now {} | busy {:.0}% (last s) | {} blocking episode{}{pending} | Ctrl-C stops and writes the file",
        rec.samples.len(),
        rec.failures.len(),
        duration_ms(lag),
        busy * 100.0,
        live.count,
        if live.count == 1 { "" } else { "s" },
    );
    if tty {
        eprint!("\r\x1b[K{line}");
    } else {
        eprintln!("{line}");
    }
}

fn render(
    format: RecordFormat,
    rec: &Recording,
    analysis: &metrics::Analysis,
    rep: &report::RecordReport,
    cwd: Option<&str>,
    all_threads: bool,
) -> Result<Vec<u8>, Failure> {
    let fail = |e: std::io::Error| Failure::OutputFailed { path: "the output".into(), detail: e.to_string() };
    Ok(match format {
        RecordFormat::Json => serde_json::to_vec_pretty(rep).expect("report serialises"),
        RecordFormat::Collapsed => {
            let mut text = flamegraph::fold(rec, analysis, cwd, all_threads).collapsed().join("\n");
            text.push('\n');
            text.into_bytes()
        }
        RecordFormat::Svg => {
            let folded = flamegraph::fold(rec, analysis, cwd, all_threads);
            let header = Header {
                title: format!("loopspy: PID {} {}", rep.target.pid, rep.target.command.join(" ")),
                subtitle: report::headline(rec, analysis),
            };
            let mut out = Vec::new();
            flamegraph::svg(&folded, &header, analysis.threshold_ms, &mut out).map_err(fail)?;
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_compact_utc() {
        let t = timestamp();
        assert_eq!(t.len(), 16, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[8] == b'T', "{t}");
    }
}
