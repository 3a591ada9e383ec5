//! What the dashboard shows, as plain data computed from a recording: the header, the state
//! line ("is the loop blocked right now?"), the last minute of lag, ready depth and busy %,
//! the top blocking frames and the recent episodes. With `--subprocesses`, an [`Overview`] of
//! the workers comes first (one row per process: lag, busy, blocked now, or gone), and a
//! worker's dashboard shows that process's loops only. Pure: the rendering tests feed it known
//! samples and check the screen.

use crate::analysis::metrics::{self, is_busy, BlockingFrame, Episode, LoopSummary};
use crate::analysis::stream::{Stream, StreamOptions};
use crate::asyncio::eventloop::LoopKind;
use crate::base::units::ms_text;
use crate::capture::recording::{EndReason, ProcessEnd, Recording, ThreadActivity};
use crate::capture::task_pane::TaskPane;
use crate::output::tui::keys::THRESHOLDS;

/// How many seconds the charts look back.
pub const WINDOW_SECS: f64 = 60.0;
/// Blocking episodes kept per loop for the list of recent ones (the oldest are dropped after
/// that, still counted and summed in the frames table): each is a few hundred bytes, and a
/// redraw copies them.
pub const EPISODES_KEPT: usize = 2_000;

/// The live figures `top` keeps from the start of `rec` (or `r`), in memory that stays the
/// same however long it runs: the last [`WINDOW_SECS`] windows, the last [`EPISODES_KEPT`]
/// episodes of every threshold `+`/`-` reaches, and those it drops summed by frame at each
/// threshold the view can show (`threshold`, given at the start, and [`THRESHOLDS`]).
pub fn live_stream(rec: &Recording, threshold: f64) -> Stream {
    let opts = StreamOptions {
        keep_threshold: THRESHOLDS[0].min(threshold),
        max_episodes: Some(EPISODES_KEPT),
        max_windows: Some(WINDOW_SECS as usize + 2),
        // The last ones, not the longest: `max_episodes` bounds them.
        max_listed: None,
        ..StreamOptions::for_recording(rec, THRESHOLDS[0].min(threshold), 1.0)
    };
    let mut at = THRESHOLDS.to_vec();
    at.push(threshold);
    Stream::new(opts).keeping_dropped_at(&at)
}

/// Which loop the dashboard shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopChoice {
    /// The worst one now: blocked longest, else busiest, else most lagging.
    Worst,
    /// This one (its index in the recording).
    Fixed(u16),
}

impl LoopChoice {
    /// `l`: from the worst loop through each loop in turn, and back.
    pub fn next(self, loops: usize) -> LoopChoice {
        if loops <= 1 {
            return LoopChoice::Worst;
        }
        match self {
            LoopChoice::Worst => LoopChoice::Fixed(0),
            LoopChoice::Fixed(i) if (i as usize) + 1 < loops => LoopChoice::Fixed(i + 1),
            LoopChoice::Fixed(_) => LoopChoice::Worst,
        }
    }
}

/// Sort orders of the blocking-frames table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Total,
    Episodes,
    Longest,
    Name,
}

impl SortBy {
    pub fn next(self) -> Self {
        match self {
            SortBy::Total => SortBy::Episodes,
            SortBy::Episodes => SortBy::Longest,
            SortBy::Longest => SortBy::Name,
            SortBy::Name => SortBy::Total,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortBy::Total => "total",
            SortBy::Episodes => "episodes",
            SortBy::Longest => "longest",
            SortBy::Name => "name",
        }
    }
}

/// What the lower part of the screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Episodes,
    Tasks,
}

/// Which list has the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Frames,
    Episodes,
}

/// The user's choices, kept across redraws.
#[derive(Debug, Clone)]
pub struct UiState {
    pub paused: bool,
    pub threshold: f64,
    pub sort: SortBy,
    pub focus: Focus,
    pub selected_frame: usize,
    pub selected_episode: usize,
    pub help: bool,
    pub color: bool,
    /// A one-line message (e.g. "saved x.svg"), shown in the footer.
    pub message: Option<String>,
    pub pane: Pane,
    /// Show only tasks whose name contains this.
    pub filter: String,
    /// The filter is being typed.
    pub editing_filter: bool,
    pub loop_choice: LoopChoice,
    /// `--subprocesses`: several processes are watched (the overview of workers exists).
    pub fleet: bool,
    /// The worker whose dashboard is shown (its index in the recording's processes); `None`
    /// shows the overview (with `fleet`).
    pub worker: Option<u16>,
    /// The overview's selected row.
    pub selected_worker: usize,
}

impl UiState {
    pub fn new(threshold: f64, color: bool) -> Self {
        UiState {
            paused: false,
            threshold,
            sort: SortBy::Total,
            focus: Focus::Episodes,
            selected_frame: 0,
            selected_episode: 0,
            help: false,
            color,
            message: None,
            pane: Pane::Episodes,
            filter: String::new(),
            editing_filter: false,
            loop_choice: LoopChoice::Worst,
            fleet: false,
            worker: None,
            selected_worker: 0,
        }
    }

    /// Is the overview of workers shown (rather than one dashboard)?
    pub fn overview(&self) -> bool {
        self.fleet && self.worker.is_none()
    }
}

/// Facts about the target for the header.
#[derive(Debug, Clone, Default)]
pub struct TargetInfo {
    pub pid: i32,
    pub command: String,
    pub python: String,
    /// The target's working directory: file names under it are shown relative.
    pub cwd: Option<String>,
}

/// A command line for a narrow header: programs and paths by their last component.
pub fn short_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| if a.starts_with('/') { a.rsplit('/').next().unwrap_or(a).to_string() } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The urgency of the state line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Ok,
    Warn,
    Alert,
    Info,
}

#[derive(Debug, Clone)]
pub struct StateLine {
    pub text: String,
    pub severity: Severity,
}

/// Everything drawn.
#[derive(Debug, Clone)]
pub struct TopModel {
    pub header: String,
    pub state: StateLine,
    /// Per second over the last minute, oldest first.
    pub lag_max_ms: Vec<u64>,
    pub ready_max: Vec<u64>,
    pub busy_pct: Vec<u64>,
    pub lag_now_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_peak_ms: f64,
    pub ready_now: u32,
    pub busy_now_pct: f64,
    pub frames: Vec<BlockingFrame>,
    /// Most recent first.
    /// Blocking episodes at the threshold since the start (or `r`), kept or not.
    pub episodes_total: u64,
    pub episodes: Vec<Episode>,
    /// The selected episode's stack, innermost first, as text lines.
    pub stack: Vec<String>,
    pub threshold_ms: f64,
    pub sort: SortBy,
    pub tasks: Option<TaskPane>,
    /// What makes the figures less trustworthy (many failed looks, a low rate).
    pub warning: Option<String>,
    /// The shown loop's most urgent diagnosis (`analysis::diagnosis`) over the session, as
    /// one line with its next step (escaped), and how many more there are.
    pub diagnosis: Option<String>,
}

/// A diagnosis on one line: `DIAGNOSIS: title. Next: step` (strings escaped).
fn diagnosis_text(d: &crate::analysis::diagnosis::Diagnosis, more: usize) -> String {
    let more = if more > 0 { format!(" (+{more} more)") } else { String::new() };
    format!("DIAGNOSIS: {}{more}. Next: {}", e(&d.title), e(&d.next_step))
}

fn activity_text(a: ThreadActivity) -> String {
    match a {
        ThreadActivity::OnCpu => "on CPU".to_string(),
        ThreadActivity::Unknown => "state unknown".to_string(),
        other => format!("waiting in {}", other.describe()),
    }
}

/// A string from the target, for the terminal.
fn e(s: &str) -> std::borrow::Cow<'_, str> {
    crate::base::escape::terminal(s)
}

/// A loop's name for the header: its thread and class.
fn loop_name(rec: &Recording, i: usize) -> String {
    match rec.loops.get(i) {
        Some(m) => {
            let thread = m.thread_name.clone().unwrap_or_else(|| format!("thread {}", m.native_id.unwrap_or(0)));
            format!("{} {}", e(&thread), e(&m.loop_class))
        }
        None => "no loop".to_string(),
    }
}

/// The loops a dashboard chooses among (indices in the recording): the focused worker's with
/// `--subprocesses`, else all of them.
pub fn loops_shown(rec: &Recording, worker: Option<u16>) -> Vec<usize> {
    match worker {
        Some(p) if rec.is_fleet() => (0..rec.loops.len()).filter(|l| rec.process_of_loop(*l as u16) == Some(p)).collect(),
        _ => (0..rec.loops.len()).collect(),
    }
}

/// The loop that is worst now: blocked in a callback longest, else busiest in its current
/// second, else with the most lag.
pub fn worst_loop(rec: &Recording, stream: &Stream) -> usize {
    worst_of(rec, stream, &(0..rec.loops.len()).collect::<Vec<_>>())
}

/// The worst loop now among `loops` (the first of them, or 0, when none has a sample).
pub fn worst_of(rec: &Recording, stream: &Stream, loops: &[usize]) -> usize {
    let score = |i: usize| -> (u8, f64) {
        let Some(l) = stream.loop_stream(i) else { return (0, 0.0) };
        if let Some(run) = l.current_run(rec, &stream.opts) {
            return (3, run.duration_ms);
        }
        let busy = l.busy_now_pct(&stream.opts);
        if busy > 0.0 {
            return (2, busy);
        }
        (1, l.last().and_then(|s| s.lag_ms()).unwrap_or(0.0))
    };
    loops.iter().copied().max_by(|a, b| score(*a).partial_cmp(&score(*b)).unwrap_or(std::cmp::Ordering::Equal).then(b.cmp(a))).unwrap_or(0)
}

/// The state line: is the loop blocked right now?
fn state_line(
    rec: &Recording,
    stream: &Stream,
    shown: usize,
    summary: Option<&LoopSummary>,
    ui: &UiState,
    target: &TargetInfo,
    gone: Option<ProcessEnd>,
) -> StateLine {
    if let Some(end) = gone {
        let how = match end {
            ProcessEnd::Exited => "exited",
            ProcessEnd::Exec => "replaced its program (exec)",
        };
        return StateLine {
            text: format!("WORKER GONE: PID {} {how}; these are its last figures (w: all workers)", target.pid),
            severity: Severity::Info,
        };
    }
    if rec.end == EndReason::TargetExited {
        return StateLine { text: "TARGET EXITED: the process ended; these are its last figures".into(), severity: Severity::Info };
    }
    if ui.paused {
        return StateLine { text: "PAUSED (p resumes)".into(), severity: Severity::Info };
    }
    let Some(l) = stream.loop_stream(shown) else {
        return StateLine { text: "waiting for the first sample".into(), severity: Severity::Info };
    };
    let Some(last) = l.last() else {
        return StateLine { text: "waiting for the first sample".into(), severity: Severity::Info };
    };
    if last.state == crate::asyncio::loopstate::LoopState::Stopped {
        return StateLine {
            text: format!(
                "STOPPED: the process is stopped (SIGSTOP, Ctrl-Z or a debugger): nothing runs; `kill -CONT {}` resumes it",
                target.pid
            ),
            severity: Severity::Alert,
        };
    }
    if is_busy(last.state) {
        // The callback running now, blamed as its episode will be.
        let run = l.current_run(rec, &stream.opts);
        let busy_ms = match &run {
            Some(r) => r.duration_ms,
            None => summary.and_then(|l| l.busy_now_ms).unwrap_or(0.0),
        };
        let frame = match run.as_ref().and_then(|r| r.blame.as_ref()) {
            _ if last.state == crate::asyncio::loopstate::LoopState::Loop => "event-loop bookkeeping".to_string(),
            // The garbage collector has no file.
            Some(b) if b.file.is_empty() => e(&b.function).into_owned(),
            Some(b) => {
                format!("{} ({}:{})", e(&b.function), e(crate::output::flamegraph::short_path(&b.file, target.cwd.as_deref())), b.line)
            }
            None => "<no Python frame>".into(),
        };
        let task = run.and_then(|r| r.task).map(|t| format!(" task \"{}\"", e(&t))).unwrap_or_default();
        let blocked = busy_ms >= ui.threshold * 1e3;
        let word = if blocked { "BLOCKED" } else { "busy" };
        StateLine {
            text: format!("{word} {} in {frame}{task}, {}", ms_text(busy_ms), activity_text(last.activity)),
            severity: if blocked { Severity::Alert } else { Severity::Warn },
        }
    } else {
        let lag = match last.lag_ms() {
            Some(ms) => ms_text(ms),
            None => "unknown".to_string(),
        };
        let what = match rec.loops.get(shown).map(|l| l.loop_kind) {
            Some(LoopKind::Uvloop) => "idle in epoll (uvloop)",
            _ => "idle in select",
        };
        let previous = summary
            .and_then(|l| l.episodes.last())
            .map(|ep| {
                format!(
                    " | last blocked {} ago: {} {}",
                    ms_text((last.t - ep.end).max(0.0) * 1e3),
                    e(&ep.function),
                    ms_text(ep.duration_ms)
                )
            })
            .unwrap_or_default();
        StateLine {
            text: format!("{what}: lag {lag}, {} ready{previous}", last.ready),
            severity: if last.state == crate::asyncio::loopstate::LoopState::Unknown { Severity::Info } else { Severity::Ok },
        }
    }
}

fn sort_frames(frames: &mut [BlockingFrame], sort: SortBy) {
    match sort {
        SortBy::Total => frames.sort_by(|a, b| b.blocked_ms.total_cmp(&a.blocked_ms)),
        SortBy::Episodes => frames.sort_by(|a, b| b.episodes.cmp(&a.episodes).then(b.blocked_ms.total_cmp(&a.blocked_ms))),
        SortBy::Longest => frames.sort_by(|a, b| b.longest_ms.total_cmp(&a.longest_ms)),
        SortBy::Name => frames.sort_by(|a, b| a.function.cmp(&b.function)),
    }
}

/// Build the model from the live stream: figures cover the session (since start or reset),
/// the charts the last minute. Costs the same however long `top` has run (the stream holds
/// per-second windows and the episodes kept, not every sample).
pub fn build(rec: &Recording, stream: &Stream, target: &TargetInfo, ui: &UiState, rate_hz: f64, tasks: Option<&TaskPane>) -> TopModel {
    let analysis = metrics::analysis_of(stream, rec, ui.threshold);
    // A worker's dashboard: its loops, its PID and command in the header.
    let process = ui.worker.filter(|_| rec.is_fleet()).and_then(|p| rec.processes.get(p as usize).map(|m| (p, m)));
    let worker_target;
    let target = match process {
        Some((_, m)) => {
            worker_target =
                TargetInfo { pid: m.pid, command: short_command(&m.command), python: m.python.clone(), cwd: target.cwd.clone() };
            &worker_target
        }
        None => target,
    };
    let candidates = loops_shown(rec, process.map(|(p, _)| p));
    let shown = match ui.loop_choice {
        LoopChoice::Fixed(i) if (i as usize) < candidates.len() => candidates[i as usize],
        _ => worst_of(rec, stream, &candidates),
    };
    let position = candidates.iter().position(|l| *l == shown).unwrap_or(0);
    let summary = analysis.loops.get(shown);
    // The frames table: the loop shown's episodes (those no longer kept summed by frame).
    let mut frames = metrics::blocking_frames_of(summary);
    sort_frames(&mut frames, ui.sort);
    for f in &mut frames {
        f.file = e(crate::output::flamegraph::short_path(&f.file, target.cwd.as_deref())).into_owned();
        f.function = e(&f.function).into_owned();
        f.waiting_in = f.waiting_in.as_deref().map(|w| e(w).into_owned());
    }
    let mut episodes: Vec<Episode> = summary.map(|l| l.episodes.clone()).unwrap_or_default();
    episodes.reverse();
    for ep in &mut episodes {
        ep.function = e(&ep.function).into_owned();
        ep.file = e(&ep.file).into_owned();
        ep.task = ep.task.as_deref().map(|t| e(t).into_owned());
    }
    let stack = episodes
        .get(ui.selected_episode.min(episodes.len().saturating_sub(1)))
        .map(|e| rec.stack(e.stack).map(|f| crate::output::flamegraph::frame_label(f, target.cwd.as_deref())).collect())
        .unwrap_or_default();

    let windows = summary.map(|l| l.windows.clone()).unwrap_or_default();
    let keep = WINDOW_SECS as usize;
    let tail = &windows[windows.len().saturating_sub(keep)..];
    let ls = stream.loop_stream(shown);
    let last = ls.and_then(|l| l.last());
    let busy_now_pct = ls.map(|l| l.busy_now_pct(&stream.opts)).unwrap_or(0.0);
    let failed_pct = rec.failed_pct();
    let which = match (candidates.len(), ui.loop_choice) {
        (0 | 1, _) => loop_name(rec, shown),
        (n, LoopChoice::Worst) => format!("loop {}/{n} (worst now, l switches): {}", position + 1, loop_name(rec, shown)),
        (n, LoopChoice::Fixed(_)) => format!("loop {}/{n} (l switches): {}", position + 1, loop_name(rec, shown)),
    };
    let worker = match process {
        Some((p, _)) => format!("worker {}/{} (w: all) ", p as usize + 1, rec.processes.len()),
        None => String::new(),
    };
    let header = format!(
        "{worker}PID {} {} | Py {} {} | {:.0} Hz | {} samples, {:.1}% failed | up {:.0} s",
        target.pid,
        e(&target.command),
        target.python,
        which,
        rate_hz,
        rec.total_samples(),
        failed_pct,
        (rec.ended - stream.opts.started).max(0.0),
    );
    TopModel {
        header,
        state: state_line(rec, stream, shown, summary, ui, target, process.and_then(|(_, m)| m.end)),
        lag_max_ms: tail.iter().map(|w| w.lag_max_ms.round() as u64).collect(),
        ready_max: tail.iter().map(|w| w.ready_max as u64).collect(),
        busy_pct: tail.iter().map(|w| w.busy_pct.round() as u64).collect(),
        lag_now_ms: last.and_then(|s| s.lag_ms()).unwrap_or(0.0),
        lag_p99_ms: summary.map(|l| l.lag.p99_ms).unwrap_or(0.0),
        lag_peak_ms: tail.iter().map(|w| w.lag_max_ms).fold(0.0, f64::max),
        ready_now: last.map(|s| s.ready).unwrap_or(0),
        busy_now_pct,
        frames,
        episodes_total: summary.map_or(0, |l| l.episodes.len() as u64 + l.episodes_omitted),
        episodes,
        stack,
        threshold_ms: ui.threshold * 1e3,
        sort: ui.sort,
        // Task names and frames come from the target: escaped for the terminal here.
        tasks: tasks.map(|p| {
            let mut p = p.clone();
            for row in &mut p.rows {
                row.name = e(&row.name).into_owned();
                row.at = e(&row.at).into_owned();
            }
            p
        }),
        warning: crate::output::report::warnings(rec).into_iter().next(),
        diagnosis: {
            let mine: Vec<_> = analysis.diagnoses.iter().filter(|d| d.loop_index as usize == shown).collect();
            mine.first().map(|d| diagnosis_text(d, mine.len() - 1))
        },
    }
}

/// One plain line of headline figures (for `top` when stdout is not a terminal).
pub fn plain_line(model: &TopModel, clock: &str) -> String {
    let tasks = model.tasks.as_ref().map(|t| format!(" | {} pending tasks", t.counts.pending)).unwrap_or_default();
    let diagnosis = model.diagnosis.as_ref().map(|d| format!(" | {d}")).unwrap_or_default();
    format!(
        "{clock} {} | busy {:.0}% | lag now {} p99 {} | ready {}{tasks} | {} blocking episode{} | top {}{diagnosis}",
        model.state.text,
        model.busy_now_pct,
        ms_text(model.lag_now_ms),
        ms_text(model.lag_p99_ms),
        model.ready_now,
        model.episodes_total,
        if model.episodes_total == 1 { "" } else { "s" },
        model
            .frames
            .first()
            .map(|f| format!(
                "{} ({} in {} episode{})",
                f.function,
                ms_text(f.blocked_ms),
                f.episodes,
                if f.episodes == 1 { "" } else { "s" }
            ))
            .unwrap_or_else(|| "-".into()),
    )
}

/// What a worker is doing now, as its worst loop says.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerNow {
    /// No sample of it yet.
    Starting,
    /// Idle in select (or epoll): nothing runs.
    Idle,
    /// In a callback for less than the threshold, in `function`.
    Busy { ms: f64, function: String },
    /// In a callback for at least the threshold: blocked, in `function`.
    Blocked { ms: f64, function: String, waiting_in: String },
    /// Stopped (SIGSTOP, a debugger).
    Stopped,
    /// It left the recording: exited, or replaced its program.
    Gone(ProcessEnd),
}

impl WorkerNow {
    pub fn text(&self) -> String {
        match self {
            WorkerNow::Starting => "waiting for the first sample".into(),
            WorkerNow::Idle => "idle".into(),
            WorkerNow::Busy { ms, function } => format!("busy {} in {function}", ms_text(*ms)),
            WorkerNow::Blocked { ms, function, waiting_in } => format!("BLOCKED {} in {function}, {waiting_in}", ms_text(*ms)),
            WorkerNow::Stopped => "STOPPED (SIGSTOP or a debugger)".into(),
            WorkerNow::Gone(ProcessEnd::Exited) => "gone (exited)".into(),
            WorkerNow::Gone(ProcessEnd::Exec) => "gone (exec)".into(),
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            WorkerNow::Blocked { .. } | WorkerNow::Stopped => Severity::Alert,
            WorkerNow::Busy { .. } => Severity::Warn,
            WorkerNow::Idle => Severity::Ok,
            WorkerNow::Starting | WorkerNow::Gone(_) => Severity::Info,
        }
    }
}

/// One row of the overview: a process of the tree that runs a loop.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// Its index in the recording's processes (what `w` focuses).
    pub process: u16,
    pub pid: i32,
    pub command: String,
    pub python: String,
    pub loops: usize,
    /// The largest lag among its loops at their last sample (`None`: unknown).
    pub lag_now_ms: Option<f64>,
    /// The busiest of its loops, in the current second.
    pub busy_now_pct: f64,
    /// Blocking episodes (at the threshold) since the start or `r`.
    pub episodes: usize,
    pub now: WorkerNow,
}

/// The overview of workers (`top --subprocesses`).
#[derive(Debug, Clone)]
pub struct Overview {
    pub header: String,
    /// In the order the processes joined; those gone stay, marked.
    pub rows: Vec<WorkerRow>,
    pub threshold_ms: f64,
    pub warning: Option<String>,
}

/// Build the overview: one row per process of the recording, from the live stream.
pub fn overview(rec: &Recording, stream: &Stream, root: &TargetInfo, ui: &UiState, rate_hz: f64) -> Overview {
    let analysis = metrics::analysis_of(stream, rec, ui.threshold);
    let rows = rec
        .processes
        .iter()
        .enumerate()
        .map(|(p, meta)| {
            let loops = loops_shown(rec, Some(p as u16));
            let streams: Vec<_> = loops.iter().filter_map(|l| stream.loop_stream(*l)).collect();
            let lag_now_ms = streams.iter().filter_map(|s| s.last().and_then(|x| x.lag_ms())).reduce(f64::max);
            let busy_now_pct = streams.iter().map(|s| s.busy_now_pct(&stream.opts)).fold(0.0, f64::max);
            let episodes =
                loops.iter().filter_map(|l| analysis.loops.get(*l)).map(|l| l.episodes.len() + l.episodes_omitted as usize).sum();
            let now = match meta.end {
                Some(end) => WorkerNow::Gone(end),
                None => worker_now(rec, stream, &loops, ui.threshold, root.cwd.as_deref()),
            };
            WorkerRow {
                process: p as u16,
                pid: meta.pid,
                command: e(&short_command(&meta.command)).into_owned(),
                python: meta.python.clone(),
                loops: loops.len(),
                lag_now_ms,
                busy_now_pct,
                episodes,
                now,
            }
        })
        .collect::<Vec<_>>();
    let live = rec.processes.iter().filter(|p| p.end.is_none()).count();
    let header = format!(
        "PID {} {} and its workers | {live} running, {} gone | {:.0} Hz | {} samples, {:.1}% failed | up {:.0} s",
        root.pid,
        e(&root.command),
        rec.processes.len() - live,
        rate_hz,
        rec.total_samples(),
        rec.failed_pct(),
        rec.duration(),
    );
    Overview { header, rows, threshold_ms: ui.threshold * 1e3, warning: crate::output::report::warnings(rec).into_iter().next() }
}

/// What a process is doing now: its worst loop's state.
fn worker_now(rec: &Recording, stream: &Stream, loops: &[usize], threshold: f64, cwd: Option<&str>) -> WorkerNow {
    if loops.is_empty() {
        return WorkerNow::Starting;
    }
    let worst = worst_of(rec, stream, loops);
    let Some(l) = stream.loop_stream(worst) else { return WorkerNow::Starting };
    let Some(last) = l.last() else { return WorkerNow::Starting };
    if last.state == crate::asyncio::loopstate::LoopState::Stopped {
        return WorkerNow::Stopped;
    }
    if !is_busy(last.state) {
        return WorkerNow::Idle;
    }
    let run = l.current_run(rec, &stream.opts);
    let function = match run.as_ref().and_then(|r| r.blame.as_ref()) {
        _ if last.state == crate::asyncio::loopstate::LoopState::Loop => "event-loop bookkeeping".to_string(),
        Some(b) if b.file.is_empty() => e(&b.function).into_owned(),
        Some(b) => format!("{} ({}:{})", e(&b.function), e(crate::output::flamegraph::short_path(&b.file, cwd)), b.line),
        None => "<no Python frame>".into(),
    };
    let ms = run.map(|r| r.duration_ms).unwrap_or(0.0);
    if ms >= threshold * 1e3 {
        WorkerNow::Blocked { ms, function, waiting_in: activity_text(last.activity) }
    } else {
        WorkerNow::Busy { ms, function }
    }
}

/// The overview as plain lines, one per worker (for `top --subprocesses` on a pipe).
pub fn plain_overview(ov: &Overview, clock: &str) -> Vec<String> {
    ov.rows
        .iter()
        .map(|r| {
            format!(
                "{clock} PID {} {} | {} | busy {:.0}% | lag now {} | {} blocking episode{}",
                r.pid,
                r.command,
                r.now.text(),
                r.busy_now_pct,
                r.lag_now_ms.map(ms_text).unwrap_or_else(|| "unknown".into()),
                r.episodes,
                if r.episodes == 1 { "" } else { "s" },
            )
        })
        .collect()
}
