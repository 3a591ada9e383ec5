//! `loopspy top`: sample continuously and show the dashboard; on a pipe, one plain line per
//! second instead.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::analysis::metrics::{self, Options};
use crate::asyncio::callback;
use crate::asyncio::tasks::{self, TaskState};
use crate::base::error::Failure;
use crate::capture::recording::{EndReason, LoopMeta, Recording};
use crate::capture::sampler::{SampleError, Sampler, SamplerOptions};
use crate::capture::task_counter::TaskCounter;
use crate::cli::config::TopConfig;
use crate::output::flamegraph::{self, Header};
use crate::output::outputs;
use crate::output::report;
use crate::output::tui::model::{self, Focus, Pane, TargetInfo, TaskPane, TaskRow, UiState};
use crate::output::tui::terminal::{color_wanted, TerminalGuard};
use crate::output::tui::view;
use crate::process::procfs;
use crate::process::signals::Stop;
use crate::python::frames::StackReader;
use crate::python::target::AttachOptions;

/// Blocking thresholds `+`/`-` step through, in seconds.
const THRESHOLDS: &[f64] = &[0.010, 0.025, 0.050, 0.100, 0.200, 0.500, 1.0, 2.0, 5.0];

fn step_threshold(current: f64, up: bool) -> f64 {
    if up {
        THRESHOLDS.iter().copied().find(|t| *t > current + 1e-9).unwrap_or(current)
    } else {
        THRESHOLDS.iter().rev().copied().find(|t| *t < current - 1e-9).unwrap_or(current)
    }
}

/// Task names are read once per task, at most this many new ones per refresh.
const NAMES_PER_REFRESH: usize = 5_000;
/// Rows described in the task pane.
const TASK_ROWS: usize = 40;

/// What the task pane needs across refreshes: when each task was first seen pending, and the
/// names already read.
#[derive(Default)]
struct TaskTracker {
    counter: TaskCounter,
    first_seen: HashMap<u64, f64>,
    names: HashMap<u64, String>,
    stacks: StackReader,
    pane: Option<TaskPane>,
    counted_at: f64,
}

impl TaskTracker {
    /// Count when due; refresh the pane for loop 0 with the user's filter.
    fn refresh(&mut self, sampler: &Sampler, rec: &mut Recording, filter: &str) {
        let now = sampler.now();
        if let Some(p) = self.pane.as_mut() {
            p.age_s = now - self.counted_at;
        }
        if !self.counter.due(now) {
            return;
        }
        let loops = sampler.loop_addresses();
        if self.counter.count(&sampler.target, &loops, now, rec).is_err() {
            return;
        }
        self.counted_at = now;
        let Some(set) = self.counter.last.as_ref() else { return };
        let Some(&(_, loop_addr)) = loops.first() else { return };
        let r = &sampler.target.reader;
        let running = sampler.current_task(0);
        let pending: Vec<u64> = set.of_loop(loop_addr).filter(|(_, _, s)| *s == TaskState::Pending).map(|(t, _, _)| *t).collect();
        let live: std::collections::HashSet<u64> = pending.iter().copied().collect();
        self.first_seen.retain(|t, _| live.contains(t));
        self.names.retain(|t, _| live.contains(t));
        for t in &pending {
            self.first_seen.entry(*t).or_insert(now);
        }
        let mut order = pending;
        order.sort_by(|a, b| self.first_seen[a].total_cmp(&self.first_seen[b]));
        // Names: the rows need them; a filter needs them all (read a bounded number a time).
        let want = if filter.is_empty() { TASK_ROWS } else { order.len() };
        let mut budget = NAMES_PER_REFRESH;
        for t in order.iter().take(want) {
            if budget == 0 {
                break;
            }
            if !self.names.contains_key(t) {
                budget -= 1;
                if let Ok(n) = callback::task_name(r, *t) {
                    self.names.insert(*t, n);
                }
            }
        }
        let matching: Vec<u64> =
            order.into_iter().filter(|t| filter.is_empty() || self.names.get(t).is_some_and(|n| n.contains(filter))).collect();
        let mut rows = Vec::new();
        for t in matching.iter().take(TASK_ROWS) {
            let at = callback::task_coro(r, *t)
                .and_then(|coro| tasks::coroutine_chain(r, &mut self.stacks, coro))
                .ok()
                .and_then(|(chain, _)| chain.first().map(|f| crate::output::flamegraph::frame_label(f, None)))
                .unwrap_or_default();
            rows.push(TaskRow {
                name: self.names.get(t).map(|n| crate::base::escape::terminal(n).into_owned()).unwrap_or_else(|| "?".into()),
                pending_for_s: now - self.first_seen[t],
                at,
                running: Some(*t) == running,
            });
        }
        self.pane = Some(TaskPane { counts: set.counts(loop_addr), rows, matching: matching.len(), age_s: 0.0 });
    }
}

/// The session: sampler, what was recorded, the user's choices.
struct Session {
    sampler: Sampler,
    rec: Recording,
    metas: Vec<LoopMeta>,
    rate: f64,
    next: f64,
    target: TargetInfo,
    cwd: Option<String>,
    saved: Vec<String>,
    tasks: TaskTracker,
}

impl Session {
    /// Take the samples that are due. Returns false once the target is gone.
    fn tick(&mut self) -> bool {
        if matches!(self.rec.end, EndReason::TargetExited | EndReason::TargetExec) {
            return false;
        }
        let now = self.sampler.now();
        if now < self.next {
            return true;
        }
        match self.sampler.sample(&mut self.rec, 0.5 / self.rate) {
            Ok(()) | Err(SampleError::Failed) => {}
            Err(SampleError::Exited) => {
                self.rec.end = EndReason::TargetExited;
                return false;
            }
            Err(SampleError::Exec) => {
                self.rec.end = EndReason::TargetExec;
                return false;
            }
        }
        self.rec.ended = self.rec.samples.last().map(|s| s.t).unwrap_or(now);
        self.next += 1.0 / self.rate;
        if self.next < now {
            self.next = now + 1.0 / self.rate;
        }
        true
    }

    fn reset(&mut self) {
        let now = self.sampler.now();
        self.metas = self.rec.loops.clone();
        self.rec = Recording::new(self.rate, self.metas.clone(), now);
    }

    /// Save a flame graph of everything sampled so far (same renderer as `record`).
    fn save_svg(&mut self, threshold: f64) -> String {
        let analysis = metrics::analyze(&self.rec, &Options { threshold, ..Options::default() });
        let folded = flamegraph::fold(&self.rec, &analysis, self.cwd.as_deref(), false);
        let header = Header {
            title: format!("loopspy: PID {} {}", self.target.pid, self.target.command),
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
                format!("saved {shown} ({} samples)", self.rec.samples.len())
            }
            Err(_) => format!("could not write {stem}.svg here or in {}", std::env::temp_dir().display()),
        }
    }
}

pub fn run(args: &TopConfig) -> Result<(), Failure> {
    let stop = super::stop_flag();
    let options = AttachOptions { blocking: args.blocking };
    let (target, _spawned) = super::acquire(&args.target, options, &stop)?;
    run_on(target, args, &stop)
}

/// Run the dashboard on an attached target (shared with `demo`).
pub fn run_on(target: crate::python::target::Target, args: &TopConfig, stop: &Stop) -> Result<(), Failure> {
    let pid = target.pid;
    let cwd = procfs::cwd(pid).ok().map(|p| p.display().to_string());
    let info = TargetInfo {
        pid,
        command: model::short_command(&crate::output::argv::shown_list(&procfs::cmdline(pid).unwrap_or_default(), args.full_argv)),
        python: target.version_text.clone(),
        cwd: cwd.clone(),
    };
    let (sampler, metas) = Sampler::start(target, SamplerOptions::default())?;
    let start = sampler.now();
    let mut session = Session {
        rec: Recording::new(args.rate_hz, metas.clone(), start),
        metas,
        next: start,
        rate: args.rate_hz,
        sampler,
        target: info,
        cwd,
        saved: Vec::new(),
        tasks: TaskTracker::default(),
    };
    let deadline = args.duration.map(|d| start + d.as_secs_f64());
    let plain = args.plain || !std::io::stdout().is_terminal();
    let mut ui = UiState::new(args.threshold, color_wanted() && !plain);
    if plain {
        plain_loop(&mut session, &mut ui, stop, deadline)?;
    } else {
        tui_loop(&mut session, &mut ui, stop, deadline)?;
    }
    let analysis = metrics::analyze(&session.rec, &Options { threshold: ui.threshold, ..Options::default() });
    let episodes: usize = analysis.loops.iter().map(|l| l.episodes.len()).sum();
    eprintln!(
        "loopspy top: PID {pid}: {} samples, {} blocking episode{}{}{}",
        session.rec.samples.len(),
        episodes,
        if episodes == 1 { "" } else { "s" },
        if session.rec.end == EndReason::TargetExited { "; the target exited" } else { "" },
        if session.saved.is_empty() { String::new() } else { format!("; saved {}", session.saved.join(", ")) },
    );
    Ok(())
}

fn plain_loop(s: &mut Session, ui: &mut UiState, stop: &Stop, deadline: Option<f64>) -> Result<(), Failure> {
    let mut last_line = s.sampler.now();
    let mut out = std::io::stdout();
    loop {
        if stop.is_set() || deadline.is_some_and(|d| s.sampler.now() >= d) {
            return Ok(());
        }
        let alive = s.tick();
        if alive {
            s.tasks.refresh(&s.sampler, &mut s.rec, &ui.filter);
        }
        let now = s.sampler.now();
        if now - last_line >= 1.0 || !alive {
            last_line = now;
            let m = model::build(&s.rec, &s.target, ui, s.rate, s.tasks.pane.as_ref());
            let stamp = outputs::timestamp();
            let clock = format!("{}:{}:{}Z", &stamp[9..11], &stamp[11..13], &stamp[13..15]);
            let line = model::plain_line(&m, &clock);
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                // The reader went away (a closed pipe): stop quietly.
                return Ok(());
            }
        }
        if !alive {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64((s.next - s.sampler.now()).clamp(0.0, 0.05)));
    }
}

fn tui_loop(s: &mut Session, ui: &mut UiState, stop: &Stop, deadline: Option<f64>) -> Result<(), Failure> {
    let mut term = TerminalGuard::take().map_err(|e| Failure::OutputFailed { path: "the terminal".into(), detail: e.to_string() })?;
    let mut last_draw = f64::MIN;
    let mut dirty = true;
    loop {
        if stop.is_set() || deadline.is_some_and(|d| s.sampler.now() >= d) {
            return Ok(());
        }
        if !ui.paused && s.tick() {
            s.tasks.refresh(&s.sampler, &mut s.rec, &ui.filter);
        }
        let now = s.sampler.now();
        if dirty || now - last_draw >= 0.25 {
            let m = model::build(&s.rec, &s.target, ui, s.rate, s.tasks.pane.as_ref());
            let clamp = |sel: &mut usize, len: usize| *sel = (*sel).min(len.saturating_sub(1));
            clamp(&mut ui.selected_frame, m.frames.len());
            clamp(&mut ui.selected_episode, m.episodes.len());
            term.terminal
                .draw(|f| view::draw(f, &m, ui))
                .map_err(|e| Failure::OutputFailed { path: "the terminal".into(), detail: e.to_string() })?;
            last_draw = now;
            dirty = false;
        }
        let wait = if ui.paused || s.rec.end == EndReason::TargetExited { 0.1 } else { (s.next - now).clamp(0.0, 0.02) };
        if event::poll(Duration::from_secs_f64(wait)).unwrap_or(false) {
            let Ok(Event::Key(key)) = event::read() else {
                dirty = true; // resize and the like
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            dirty = true;
            ui.message = None;
            if ui.editing_filter {
                match key.code {
                    KeyCode::Enter => ui.editing_filter = false,
                    KeyCode::Esc => {
                        ui.editing_filter = false;
                        ui.filter.clear();
                    }
                    KeyCode::Backspace => {
                        ui.filter.pop();
                    }
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => ui.filter.push(c),
                    _ => {}
                }
                // Apply the filter at the next count, without waiting for it.
                s.tasks.counter = TaskCounter::new();
                continue;
            }
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                KeyCode::Char('p') => {
                    ui.paused = !ui.paused;
                    s.next = s.sampler.now();
                }
                KeyCode::Char('s') => ui.message = Some(s.save_svg(ui.threshold)),
                KeyCode::Char('r') => {
                    s.reset();
                    ui.message = Some("figures reset".into());
                }
                KeyCode::Char('+') | KeyCode::Char('=') => ui.threshold = step_threshold(ui.threshold, true),
                KeyCode::Char('-') | KeyCode::Char('_') => ui.threshold = step_threshold(ui.threshold, false),
                KeyCode::Char('o') => ui.sort = ui.sort.next(),
                KeyCode::Char('t') => ui.pane = if ui.pane == Pane::Tasks { Pane::Episodes } else { Pane::Tasks },
                KeyCode::Char('/') => {
                    ui.pane = Pane::Tasks;
                    ui.editing_filter = true;
                }
                KeyCode::Char('?') | KeyCode::Char('h') => ui.help = !ui.help,
                KeyCode::Tab | KeyCode::BackTab => ui.focus = if ui.focus == Focus::Frames { Focus::Episodes } else { Focus::Frames },
                KeyCode::Up | KeyCode::Char('k') => match ui.focus {
                    Focus::Frames => ui.selected_frame = ui.selected_frame.saturating_sub(1),
                    Focus::Episodes => ui.selected_episode = ui.selected_episode.saturating_sub(1),
                },
                KeyCode::Down | KeyCode::Char('j') => match ui.focus {
                    Focus::Frames => ui.selected_frame += 1,
                    Focus::Episodes => ui.selected_episode += 1,
                },
                _ => dirty = false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_step_and_stop_at_the_ends() {
        assert_eq!(step_threshold(0.100, true), 0.200);
        assert_eq!(step_threshold(0.100, false), 0.050);
        assert_eq!(step_threshold(0.010, false), 0.010);
        assert_eq!(step_threshold(5.0, true), 5.0);
        assert_eq!(step_threshold(0.3, true), 0.5);
        assert_eq!(step_threshold(0.3, false), 0.2);
    }
}
