//! `loopspy record`: sample until the duration, Ctrl-C or the target's exit; then write the
//! file (always, with every sample taken) and a summary.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::analysis::metrics::{self, is_busy};
use crate::analysis::stream::{Stream, StreamOptions, ThreadsFold};
use crate::base::error::Failure;
use crate::base::escape;
use crate::base::units::ms_text;
use crate::capture::capture_file::{self, CaptureHeader, CaptureWriter};
use crate::capture::fleet_sampler::FleetSampler;
use crate::capture::recording::{EndReason, Recording};
use crate::capture::sampler::{SampleError, Sampler, SamplerOptions};
use crate::capture::task_counter::TaskCounter;
use crate::cli::config::RecordConfig;
use crate::output::argv;
use crate::output::format::RecordFormat;
use crate::output::jsonl::{JsonlFeed, StartFacts};
use crate::output::outputs::{self, LineSink, Rendering};
use crate::output::report::{self, TargetFacts};
use crate::process::procfs;
use crate::python::published::LayoutCheck;
use crate::python::target::AttachOptions;

/// What is sampled: one process, or a tree of them (`--subprocesses`).
enum Source {
    One { sampler: Box<Sampler>, tasks: TaskCounter },
    Tree(Box<FleetSampler>),
}

impl Source {
    fn now(&self) -> f64 {
        match self {
            Source::One { sampler, .. } => sampler.now(),
            Source::Tree(f) => f.now(),
        }
    }

    fn sample(&mut self, rec: &mut Recording, budget: f64) -> Result<(), SampleError> {
        match self {
            Source::One { sampler, .. } => sampler.sample(rec, budget),
            Source::Tree(f) => f.sample(rec, budget),
        }
    }

    fn count_tasks(&mut self, now: f64, rec: &mut Recording) {
        match self {
            Source::One { sampler, tasks } => {
                if tasks.due(now) {
                    let loops = sampler.loop_addresses();
                    // A failed count is skipped; the next one comes at the usual time.
                    let _ = tasks.count(&sampler.target, &loops, now, rec);
                }
            }
            Source::Tree(f) => f.count_tasks(now, rec),
        }
    }

    /// The layout as it ended up (3.14+ finds the asyncio offsets once the loop runs).
    fn layout(&self) -> Option<LayoutCheck> {
        match self {
            Source::One { sampler, .. } => Some(sampler.target.layout_check.clone()),
            Source::Tree(f) => f.first.as_ref().map(|(_, l)| l.clone()),
        }
    }
}

pub fn run(args: &RecordConfig) -> Result<(), Failure> {
    // Every output must be writable before minutes are spent recording; none is created yet.
    let mut outputs = outputs::plan(&args.outputs, args.format, |f| PathBuf::from(format!("loopspy-PID-TIME.{}", f.extension())))?;
    let stop = super::stop_flag();
    let options = AttachOptions { blocking: args.blocking };
    let sampler_options = SamplerOptions { all_threads: args.all_threads };
    let (mut source, mut rec, spawned, python) = if args.subprocesses {
        let (fleet, found, spawned) = super::acquire_fleet(&args.target, options, &stop, None, args.full_argv)?;
        let full_argv = args.full_argv;
        let show = Box::new(move |a: &[String]| crate::output::argv::shown_list(a, full_argv));
        let (fs, rec) = FleetSampler::start(fleet, found, sampler_options, args.rate_hz, show)?;
        let python = fs.first.as_ref().map(|(v, _)| v.clone()).unwrap_or_default();
        (Source::Tree(Box::new(fs)), rec, spawned, python)
    } else {
        let (target, spawned) = super::acquire(&args.target, options, &stop)?;
        let python = target.version_text.clone();
        let root = spawned.as_ref().map(|s| s.pid()).unwrap_or(target.pid);
        let shown = target.pid;
        let (sampler, metas) = Sampler::start(target, sampler_options).map_err(super::with_descendants_hint)?;
        // Workers of the program (or of the PID) that run loops too: say so before recording.
        if let Some(hint) = super::hint_text(shown, &super::loops_elsewhere(root, shown)) {
            say(&hint);
        }
        let start = sampler.now();
        let rec = Recording::new(args.rate_hz, metas, start);
        (Source::One { sampler: Box::new(sampler), tasks: TaskCounter::new() }, rec, spawned, python)
    };
    let pid = match (&source, &spawned, &args.target) {
        (Source::One { sampler, .. }, _, _) => sampler.target.pid,
        (Source::Tree(_), Some(s), _) => s.pid(),
        (Source::Tree(_), None, crate::cli::config::TargetSpec::Pid(p)) => *p,
        (Source::Tree(_), None, _) => rec.processes.first().map(|p| p.pid).unwrap_or(0),
    };
    let argv = procfs::cmdline(pid).unwrap_or_default();
    let stamp = outputs::timestamp();
    // The default name, now that the PID is known.
    for o in &mut outputs {
        if o.path.as_ref().is_some_and(|p| p.as_os_str().to_string_lossy().starts_with("loopspy-PID-TIME.")) && args.outputs.is_empty() {
            o.path = Some(PathBuf::from(format!("loopspy-{pid}-{stamp}.{}", o.format.extension())));
        }
    }
    let mut facts = TargetFacts {
        pid,
        command: crate::output::argv::shown_list(&argv, args.full_argv),
        python,
        layout: source.layout().unwrap_or_else(|| LayoutCheck { source: "unknown".into(), checked: 0, differences: Vec::new() }),
    };
    let cwd = procfs::cwd(pid).ok().map(|p| p.display().to_string());
    let period = 1.0 / args.rate_hz;
    let start = rec.started;

    // The samples go to disk as they come: a capture file a killed loopspy leaves behind.
    let header = CaptureHeader {
        pid,
        // The capture leaves the machine as an output does: secrets redacted there too.
        command: crate::output::argv::shown_list(&argv, args.full_argv),
        python: facts.python.clone(),
        rate_hz: args.rate_hz,
        started: start,
        blocking: args.blocking,
        all_threads: args.all_threads,
        cwd: cwd.clone(),
        subprocesses: args.subprocesses,
    };
    let mut capture = match open_capture(args, &outputs, pid, &stamp, &header) {
        Ok(c) => Some(c),
        Err(e) => {
            say(&format!("loopspy: no capture file ({e}); recording in memory only"));
            None
        }
    };
    if let Some(c) = &capture {
        say(&format!(
            "loopspy: recording PID {pid}{}; samples saved as they come in {} (if loopspy is stopped hard: `loopspy render {}`)",
            if rec.is_fleet() { " and its subprocesses" } else { "" },
            escape::terminal(&c.path().display().to_string()),
            escape::terminal(&c.path().display().to_string()),
        ));
    }

    let threshold = args.threshold;
    let deadline = args.duration.map(|d| start + d.as_secs_f64());
    // The figures and the flame graph's stacks are computed as samples come; the samples
    // themselves are let go of once written to the capture (memory stays flat however long
    // the recording runs).
    let mut stream = Stream::new(StreamOptions { fold: true, ..StreamOptions::for_recording(&rec, threshold, 1.0) });
    let mut threads = ThreadsFold::new(rec.interval());
    let hold = HOLD_SAMPLES.max(4 * args.rate_hz as usize);
    // JSON lines go out as the recording goes (the other formats are written at the end).
    let mut lines = LiveLines::open(
        &outputs,
        &rec,
        &stream,
        StartFacts {
            pid,
            command: facts.command.clone(),
            python: facts.python.clone(),
            rate_hz: args.rate_hz,
            threshold_ms: threshold * 1e3,
        },
    );
    let tty = std::io::stderr().is_terminal();
    let mut last_status = start;
    let mut next = start;
    let end = loop {
        if let Some(sig) = stop.signal() {
            break match sig {
                1 => EndReason::HungUp,
                15 => EndReason::Terminated,
                _ => EndReason::Interrupted,
            };
        }
        let now = source.now();
        if deadline.is_some_and(|d| now >= d) {
            break EndReason::Duration;
        }
        if now < next {
            std::thread::sleep(Duration::from_secs_f64((next - now).min(0.05)));
            continue;
        }
        let before = rec.samples.len();
        let (failed_before, counts_before, others_before) = (rec.failures.len(), rec.task_counts.len(), rec.other_threads.len());
        match source.sample(&mut rec, period / 2.0) {
            Ok(()) | Err(SampleError::Failed) => {}
            Err(SampleError::Exited) => break EndReason::TargetExited,
            Err(SampleError::Exec) => break EndReason::TargetExec,
        }
        for s in &rec.samples[before..] {
            stream.push(&rec, s);
        }
        for s in &rec.other_threads[others_before..] {
            threads.push(s);
        }
        source.count_tasks(now, &mut rec);
        if let Some(l) = &mut lines {
            l.add(&rec, &stream, failed_before, counts_before, now);
        }
        if let Some(c) = &mut capture {
            c.sync(&rec);
        }
        if rec.samples.len() > 2 * hold {
            // Written, counted and folded: only the last few are still needed (the status line).
            let cut = rec.samples[rec.samples.len() - hold].t;
            rec.forget_before(cut, false);
        }
        // Fixed schedule; if we fell behind (the machine was busy), do not burst to catch up.
        next += period;
        if next < now {
            next = now + period;
        }
        if now - last_status >= if tty { 0.25 } else { 5.0 } {
            last_status = now;
            status(&rec, &stream, now - start, tty);
        }
    };
    if tty {
        say_raw("\r\x1b[K");
    }
    // The last look: begun before the deadline, it may have been taken after it (a
    // `--blocking` look waits for every thread to stop first).
    let last_t = rec.samples.last().map(|s| s.t).into_iter().chain(rec.failures.last().map(|f| f.t)).fold(start, f64::max);
    rec.ended = match end {
        EndReason::Duration => deadline.map_or(last_t, |d| d.max(last_t)),
        EndReason::TargetExited | EndReason::TargetExec => last_t + period,
        _ => source.now(),
    }
    .max(start);
    rec.end = end;
    match end {
        EndReason::TargetExited if rec.is_fleet() => {
            say(&format!("loopspy: process {pid} and its subprocesses exited; writing what was recorded"))
        }
        EndReason::TargetExited => say(&format!("loopspy: process {pid} exited; writing what was recorded")),
        EndReason::TargetExec => {
            say(&format!("loopspy: process {pid} ran exec(): another program runs under its PID now; writing what was recorded until then"))
        }
        _ => {}
    }
    // The spawned program is stopped before the (possibly slow) rendering.
    drop(spawned);

    // The layout as it ended up (3.14+ finds the asyncio offsets once the loop runs).
    if let Some(layout) = source.layout() {
        facts.layout = layout;
    }
    let analysis = metrics::analysis_of(&stream, &rec, threshold);
    let rep = report::build(facts, &rec, &analysis, args.blocking);
    let command = argv::display(&header.command, args.full_argv);
    // The capture is complete before the outputs are written: a Perfetto trace draws every
    // sample, and the recording let go of all but the last ones (read back from the capture).
    let capture_path = capture.map(|c| c.finish(&rec));
    let full = match &capture_path {
        Some(Ok(path)) if outputs.iter().any(|o| o.format == RecordFormat::Perfetto) => match capture_file::read(path) {
            Ok(c) => Some(c.recording),
            Err(e) => {
                say(&format!("loopspy: could not read the capture back ({e}): the Perfetto trace draws only the last samples"));
                None
            }
        },
        _ => None,
    };
    let rendering = Rendering {
        rec: &rec,
        analysis: &analysis,
        report: &rep,
        cwd: cwd.as_deref(),
        all_threads: args.all_threads,
        command: &command,
        stream: Some((&stream, args.all_threads.then_some(&threads))),
        view: args.view,
        full: full.as_ref(),
    };
    let at_end: Vec<outputs::Output> = outputs.iter().filter(|o| !o.format.is_streamed()).cloned().collect();
    let mut written = outputs::write_all(&at_end, &rendering, &format!("loopspy-{pid}-{stamp}"));
    if let Some(l) = lines.take() {
        l.finish(&rec, &stream, &mut written, &format!("loopspy-{pid}-{stamp}"));
    }
    // The capture stays when an output could not be written where asked (or when asked for).
    let keep_capture = args.save.is_some() || !written.moved.is_empty() || !written.lost.is_empty();
    let mut notes = Vec::new();
    match capture_path {
        Some(Ok(path)) if keep_capture => notes.push(format!("the recording: {} (`loopspy render` it again)", path.display())),
        Some(Ok(path)) => {
            let _ = std::fs::remove_file(path);
        }
        Some(Err((path, e))) => notes.push(format!("the capture {} stopped early ({e}); it holds the samples until then", path.display())),
        None => {}
    }
    say_raw(&report::summary(&rep, &written.written));
    for (asked, saved, why) in &written.moved {
        say(&format!(
            "loopspy: could not write {} ({}); saved it as {} instead",
            escape::terminal(asked),
            escape::terminal(why),
            saved.display()
        ));
    }
    for (asked, why) in &written.lost {
        say(&format!("loopspy: could not write {}: {}", escape::terminal(asked), escape::terminal(why)));
    }
    for n in &notes {
        say(&format!("  {}", escape::terminal(n)));
    }
    if let Some((asked, why)) = written.lost.first() {
        return Err(Failure::Reported { code: crate::base::error::exit::OUTPUT_FAILED, what: format!("could not write {asked}: {why}") });
    }
    if let Some((asked, saved, why)) = written.moved.first() {
        return Err(Failure::Reported {
            code: crate::base::error::exit::OUTPUT_FAILED,
            what: format!("could not write {asked} ({why}); saved as {}", saved.display()),
        });
    }
    if rec.total_samples() == 0 && end == EndReason::TargetExited {
        return Err(Failure::TargetExited { pid });
    }
    match end {
        EndReason::Interrupted => Err(Failure::Signal { signal: 2 }),
        EndReason::HungUp => Err(Failure::Signal { signal: 1 }),
        EndReason::Terminated => Err(Failure::Signal { signal: 15 }),
        _ => Ok(()),
    }
}

/// The capture file: `--save FILE`, else beside the first file output, else in the temp dir.
fn open_capture(
    args: &RecordConfig,
    outputs: &[outputs::Output],
    pid: i32,
    stamp: &str,
    header: &CaptureHeader,
) -> std::io::Result<CaptureWriter> {
    if let Some(path) = &args.save {
        return CaptureWriter::create(path, header);
    }
    let beside = outputs.iter().find_map(|o| o.path.clone()).map(|p| {
        let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(format!(".{}", capture_file::EXTENSION));
        p.with_file_name(name)
    });
    let candidates = [beside, Some(std::env::temp_dir().join(format!("loopspy-{pid}-{stamp}.{}", capture_file::EXTENSION)))];
    let mut last = std::io::Error::other("nowhere to write");
    for path in candidates.into_iter().flatten() {
        match CaptureWriter::create(&path, header) {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A line on standard error; never fails (a hung-up terminal must not stop the writing of
/// what was recorded).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn say_raw(text: &str) {
    let _ = write!(std::io::stderr(), "{text}");
}

fn status(rec: &Recording, stream: &Stream, elapsed: f64, tty: bool) {
    let episodes = stream.episodes_now(rec);
    let lag = rec.samples.last().and_then(|s| s.lag_ms()).unwrap_or(0.0);
    let busy = rec.samples.iter().rev().take(rec.rate_hz as usize).filter(|s| is_busy(s.state)).count() as f64
        / rec.samples.len().clamp(1, rec.rate_hz.max(1.0) as usize) as f64;
    let pending = rec.task_counts.last().map(|c| format!(" | {} pending tasks", c.counts.pending)).unwrap_or_default();
    let processes = if rec.is_fleet() {
        let live = rec.processes.iter().filter(|p| p.left.is_none()).count();
        format!(" | {live} process{} ({} joined in all)", if live == 1 { "" } else { "es" }, rec.processes.len())
    } else {
        String::new()
    };
    let line = format!(
        "loopspy: recording [{elapsed:.1} s]{processes} {} samples ({} failed) | lag now {} | busy {:.0}% (last s) | {} blocking episode{}{pending} | Ctrl-C stops and writes the file",
        rec.total_samples(),
        rec.total_failures(),
        ms_text(lag),
        busy * 100.0,
        episodes,
        if episodes == 1 { "" } else { "s" },
    );
    if tty {
        say_raw(&format!("\r\x1b[K{line}"));
    } else {
        say(&line);
    }
}

/// Samples held in memory while recording (at least 4 s of them): the status line's last
/// second; everything older has been written to the capture and folded into the figures.
const HOLD_SAMPLES: usize = 4096;

/// The JSON-lines outputs of a recording, fed as samples come in.
struct LiveLines {
    sinks: Vec<LineSink>,
    feed: JsonlFeed,
    facts: StartFacts,
    /// When lines were last written (they go out a few times a second, not per sample).
    last: f64,
}

/// How often new lines are looked for (seconds).
const LINES_EVERY: f64 = 0.1;

impl LiveLines {
    fn open(outputs: &[outputs::Output], rec: &Recording, stream: &Stream, facts: StartFacts) -> Option<LiveLines> {
        let sinks: Vec<LineSink> = outputs.iter().filter(|o| o.format.is_streamed()).map(LineSink::open).collect();
        if sinks.is_empty() {
            return None;
        }
        let mut l = LiveLines { sinks, feed: JsonlFeed::new(), facts, last: f64::MIN };
        l.write_due(rec, stream);
        Some(l)
    }

    /// What the last look added (failed looks and task counts from these indices on; the
    /// samples are in the stream), and the lines now due.
    fn add(&mut self, rec: &Recording, stream: &Stream, failed: usize, counts: usize, now: f64) {
        for f in rec.failures.get(failed..).unwrap_or(&[]) {
            self.feed.failed(stream, f);
        }
        for c in rec.task_counts.get(counts..).unwrap_or(&[]) {
            self.feed.tasks(c);
        }
        if now - self.last >= LINES_EVERY {
            self.last = now;
            self.write_due(rec, stream);
        }
    }

    fn write_due(&mut self, rec: &Recording, stream: &Stream) {
        for line in self.feed.lines(rec, stream, &self.facts) {
            for s in &mut self.sinks {
                s.write(&line);
            }
        }
    }

    /// The last lines; the lines a sink could not write (from its failed write on) are saved in
    /// the temp directory.
    fn finish(mut self, rec: &Recording, stream: &Stream, written: &mut outputs::Written, stem: &str) {
        for line in self.feed.finish(rec, stream, &self.facts) {
            for s in &mut self.sinks {
                s.write(&line);
            }
        }
        for s in &self.sinks {
            match s.error() {
                None => written.written.push(s.output.name()),
                Some(why) => match outputs::save_in_temp(stem, "jsonl", s.missed().as_bytes()) {
                    Ok(saved) => {
                        written.moved.push((s.output.name(), saved, format!("{why}; the lines from then on are in the saved file")))
                    }
                    Err(e) => written.lost.push((s.output.name(), format!("{why}; saving it in the temp directory failed too ({e})"))),
                },
            }
        }
    }
}
