//! `loopspy top`: a sampler thread ([`Collector`]) feeds batches of samples over a channel;
//! this thread applies them to its recording and to a live [`Stream`] of the figures, turns
//! keys into actions ([`keys`]) and draws the model (or, on a pipe, prints one plain line per
//! second). Redrawing costs the same however long it has run. With `--subprocesses` the
//! sampler thread follows a process tree ([`FleetSampler`]) and the screen opens on the
//! overview of workers.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyEventKind};

use crate::analysis::metrics;
use crate::analysis::stream::Stream;
use crate::base::error::Failure;
use crate::capture::collector::{Batch, Collector, Control, Source};
use crate::capture::fleet_sampler::FleetSampler;
use crate::capture::recording::{EndReason, Recording};
use crate::capture::sampler::{Sampler, SamplerOptions};
use crate::capture::task_pane::TaskPane;
use crate::cli::config::TopConfig;
use crate::output::flamegraph::{self, Header};
use crate::output::outputs;
use crate::output::report;
use crate::output::tui::keys::{self, Effect};
use crate::output::tui::model::{self, LoopChoice, TargetInfo, UiState};
use crate::output::tui::terminal::{color_wanted, TerminalGuard};
use crate::output::tui::view;
use crate::process::procfs;
use crate::process::signals::Stop;
use crate::python::target::AttachOptions;

/// How often the screen is redrawn without a key press (seconds).
const REDRAW_EVERY: f64 = 0.25;

/// Samples held for `s` (saving a flame graph): the most recent 120,000 (about 10 MB: 20
/// minutes at 100 Hz, 2 at 1000 Hz). The figures on screen come from the stream and cover
/// the whole run; when older samples were let go the saved flame graph says which stretch it
/// covers.
pub const KEEP_SAMPLES: usize = 120_000;

/// Let go of the oldest samples once more than [`KEEP_SAMPLES`] are held (a tenth at a
/// time, so that the drain is rare), as `top` does after each batch.
pub fn hold(rec: &mut Recording) {
    if rec.samples.len() > KEEP_SAMPLES {
        let t = rec.samples[rec.samples.len() - KEEP_SAMPLES * 9 / 10].t;
        rec.forget_before(t, true);
    }
}

/// What the view holds: the recording as the batches built it, the live figures, the task
/// pane, and what was saved.
struct Session {
    rec: Recording,
    stream: Stream,
    pane: Option<TaskPane>,
    rate: f64,
    target: TargetInfo,
    cwd: Option<String>,
    saved: Vec<String>,
    /// The sampler finished (the target exited or ran exec).
    done: bool,
    /// The threshold given at the start (`+`/`-` move among `keys::THRESHOLDS` from it).
    threshold: f64,
}

impl Session {
    /// Apply a batch from the sampler thread.
    fn apply(&mut self, b: Batch) {
        let new = self.rec.apply(b.delta);
        for i in new {
            let s = self.rec.samples[i];
            self.stream.push(&self.rec, &s);
        }
        hold(&mut self.rec);
        if b.pane.is_some() {
            self.pane = b.pane;
        }
        self.done |= b.done;
    }

    /// Start the figures again from now.
    fn reset(&mut self) {
        let now = self.rec.samples.last().map(|s| s.t).unwrap_or(self.rec.ended);
        self.rec.clear(now);
        self.stream = model::live_stream(&self.rec, self.threshold);
    }

    fn model(&self, ui: &UiState) -> model::TopModel {
        model::build(&self.rec, &self.stream, &self.target, ui, self.rate, self.pane.as_ref())
    }

    fn overview(&self, ui: &UiState) -> model::Overview {
        model::overview(&self.rec, &self.stream, &self.target, ui, self.rate)
    }

    /// The loops the dashboard chooses among now (the focused worker's, or all).
    fn loops_shown(&self, ui: &UiState) -> Vec<usize> {
        model::loops_shown(&self.rec, ui.worker)
    }

    /// The recording's loop a choice among the loops shown means (for the task pane).
    fn loop_of(&self, ui: &UiState, choice: LoopChoice) -> u16 {
        let loops = self.loops_shown(ui);
        let i = match choice {
            LoopChoice::Fixed(i) => loops.get(i as usize).copied(),
            LoopChoice::Worst => None,
        };
        i.unwrap_or_else(|| model::worst_of(&self.rec, &self.stream, &loops)) as u16
    }

    /// Save a flame graph of everything sampled so far (same renderer as `record`).
    fn save_svg(&mut self, threshold: f64) -> String {
        let analysis = metrics::analyze(&self.rec, &metrics::Options { threshold, ..metrics::Options::default() });
        let folded = flamegraph::fold(&self.rec, &analysis, self.cwd.as_deref(), false);
        let covers = match self.rec.forgotten.samples {
            0 => String::new(),
            _ => format!(" (the last {:.0} s: older samples are not kept)", self.rec.duration()),
        };
        let header = Header {
            title: format!("loopspy: PID {} {}{covers}", self.target.pid, self.target.command),
            subtitle: report::headline(&self.rec, &analysis),
        };
        let mut bytes = Vec::new();
        if let Err(e) = flamegraph::svg(&folded, &header, analysis.threshold_ms, &mut bytes) {
            return format!("could not render the flame graph: {e}");
        }
        let stem = format!("loopspy-{}-{}", self.target.pid, outputs::timestamp());
        // Here (written whole, a symlink replaced, never followed), else a new file in the
        // temp directory.
        let here = PathBuf::from(format!("{stem}.svg"));
        let saved = outputs::write_atomically(&here, &bytes).map(|_| here).or_else(|_| outputs::save_in_temp(&stem, "svg", &bytes));
        match saved {
            Ok(path) => {
                let shown = path.display().to_string();
                self.saved.push(shown.clone());
                format!("saved {shown} ({} samples{covers})", self.rec.samples.len())
            }
            Err(_) => format!("could not write {stem}.svg here or in {}", std::env::temp_dir().display()),
        }
    }
}

pub fn run(args: &TopConfig) -> Result<(), Failure> {
    let stop = super::stop_flag();
    let options = AttachOptions { blocking: args.blocking };
    if args.subprocesses {
        let (fleet, found, _spawned) = super::acquire_fleet(&args.target, options, &stop, None, args.full_argv)?;
        let root = fleet.root;
        let full_argv = args.full_argv;
        let show = Box::new(move |a: &[String]| crate::output::argv::shown_list(a, full_argv));
        let (fs, rec) = FleetSampler::start(fleet, found, SamplerOptions::default(), args.rate_hz, show)?;
        let python = fs.first.as_ref().map(|(v, _)| v.clone()).unwrap_or_default();
        return watch(root, python, Source::Tree(Box::new(fs)), rec, args, &stop);
    }
    let (target, _spawned) = super::acquire(&args.target, options, &stop)?;
    run_on(target, args, &stop)
}

/// Run the dashboard on an attached target (shared with `demo`).
pub fn run_on(target: crate::python::target::Target, args: &TopConfig, stop: &Stop) -> Result<(), Failure> {
    let (pid, python) = (target.pid, target.version_text.clone());
    let (sampler, metas) = Sampler::start(target, SamplerOptions::default())?;
    let start = sampler.now();
    let rec = Recording::new(args.rate_hz, metas, start);
    watch(pid, python, Source::One(Box::new(sampler)), rec, args, stop)
}

/// Run the dashboard on a source (one process, or a tree rooted at `pid`).
fn watch(pid: i32, python: String, source: Source, rec: Recording, args: &TopConfig, stop: &Stop) -> Result<(), Failure> {
    let fleet = matches!(source, Source::Tree(_));
    let cwd = procfs::cwd(pid).ok().map(|p| p.display().to_string());
    let info = TargetInfo {
        pid,
        command: model::short_command(&crate::output::argv::shown_list(&procfs::cmdline(pid).unwrap_or_default(), args.full_argv)),
        python,
        cwd: cwd.clone(),
    };
    let collector = Collector::start_source(source, rec.clone());
    let mut session = Session {
        stream: model::live_stream(&rec, args.threshold),
        threshold: args.threshold,
        rec,
        pane: None,
        rate: args.rate_hz,
        target: info,
        cwd,
        saved: Vec::new(),
        done: false,
    };
    let deadline = args.duration.map(|d| Instant::now() + d);
    let plain = args.plain || !std::io::stdout().is_terminal();
    let mut ui = UiState::new(args.threshold, color_wanted() && !plain);
    ui.fleet = fleet;
    let result = if plain {
        plain_loop(&mut session, &collector, &mut ui, stop, deadline)
    } else {
        tui_loop(&mut session, &collector, &mut ui, stop, deadline)
    };
    for b in collector.stop() {
        session.apply(b);
    }
    result?;
    let analysis = metrics::analysis_of(&session.stream, &session.rec, ui.threshold);
    let episodes: u64 = analysis.loops.iter().map(|l| l.episodes.len() as u64 + l.episodes_omitted).sum();
    let processes = match session.rec.processes.len() {
        0 => String::new(),
        n => format!("{n} process{} with loops, ", if n == 1 { "" } else { "es" }),
    };
    eprintln!(
        "loopspy top: PID {pid}: {processes}{} samples, {} blocking episode{}{}{}",
        session.rec.total_samples(),
        episodes,
        if episodes == 1 { "" } else { "s" },
        if session.rec.end == EndReason::TargetExited { "; the target exited" } else { "" },
        if session.saved.is_empty() { String::new() } else { format!("; saved {}", session.saved.join(", ")) },
    );
    Ok(())
}

fn finished(stop: &Stop, deadline: Option<Instant>) -> bool {
    stop.is_set() || deadline.is_some_and(|d| Instant::now() >= d)
}

fn plain_loop(s: &mut Session, c: &Collector, ui: &mut UiState, stop: &Stop, deadline: Option<Instant>) -> Result<(), Failure> {
    let mut last_line = Instant::now();
    let mut out = std::io::stdout();
    loop {
        if finished(stop, deadline) {
            return Ok(());
        }
        if let Some(b) = c.next(Duration::from_millis(50)) {
            s.apply(b);
        }
        if last_line.elapsed().as_secs_f64() >= 1.0 || s.done {
            last_line = Instant::now();
            let stamp = outputs::timestamp();
            let clock = format!("{}:{}:{}Z", &stamp[9..11], &stamp[11..13], &stamp[13..15]);
            // One line per worker with --subprocesses, else one line.
            let lines =
                if ui.fleet { model::plain_overview(&s.overview(ui), &clock) } else { vec![model::plain_line(&s.model(ui), &clock)] };
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
                // The reader went away (a closed pipe): stop quietly.
                return Ok(());
            }
        }
        if s.done {
            return Ok(());
        }
    }
}

fn tui_loop(s: &mut Session, c: &Collector, ui: &mut UiState, stop: &Stop, deadline: Option<Instant>) -> Result<(), Failure> {
    let mut term = TerminalGuard::take().map_err(|e| Failure::OutputFailed { path: "the terminal".into(), detail: e.to_string() })?;
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    loop {
        if finished(stop, deadline) {
            return Ok(());
        }
        while let Some(b) = c.try_next() {
            s.apply(b);
        }
        if (dirty || last_draw.is_none_or(|t| t.elapsed().as_secs_f64() >= REDRAW_EVERY)) && ui.overview() {
            let ov = s.overview(ui);
            ui.selected_worker = ui.selected_worker.min(ov.rows.len().saturating_sub(1));
            term.terminal
                .draw(|f| view::draw_overview(f, &ov, ui))
                .map_err(|e| Failure::OutputFailed { path: "the terminal".into(), detail: e.to_string() })?;
            last_draw = Some(Instant::now());
            dirty = false;
        } else if dirty || last_draw.is_none_or(|t| t.elapsed().as_secs_f64() >= REDRAW_EVERY) {
            let m = s.model(ui);
            let clamp = |sel: &mut usize, len: usize| *sel = (*sel).min(len.saturating_sub(1));
            clamp(&mut ui.selected_frame, m.frames.len());
            clamp(&mut ui.selected_episode, m.episodes.len());
            term.terminal
                .draw(|f| view::draw(f, &m, ui))
                .map_err(|e| Failure::OutputFailed { path: "the terminal".into(), detail: e.to_string() })?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        if event::poll(Duration::from_millis(20)).unwrap_or(false) {
            let Ok(Event::Key(key)) = event::read() else {
                dirty = true; // resize and the like
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            dirty = true;
            match keys::handle(ui, key, s.loops_shown(ui).len()) {
                Effect::None => {}
                Effect::Quit => return Ok(()),
                Effect::Save => ui.message = Some(s.save_svg(ui.threshold)),
                Effect::Reset => {
                    s.reset();
                    ui.message = Some("figures reset".into());
                }
                Effect::Pause(p) => c.control(Control::Pause(p)),
                Effect::Filter(f) => c.control(Control::Filter(f)),
                Effect::Loop(choice) => c.control(Control::PaneLoop(s.loop_of(ui, choice))),
                // The task pane follows the worker shown.
                Effect::Worker(Some(_)) => c.control(Control::PaneLoop(s.loop_of(ui, LoopChoice::Worst))),
                Effect::Worker(None) => {}
            }
        }
    }
}
