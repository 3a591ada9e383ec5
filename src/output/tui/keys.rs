//! The keys of `top`, as data: [`KEYS`] is the one table the key handling, the help screen,
//! `loopspy top --help` and docs/cli.md come from (a test checks the docs); [`action`] maps a
//! key press to an [`Action`], and [`apply`] changes the UI state for it (pure functions, unit
//! tested). What an action asks of the rest of `top` (quit, save, reset, pause, a new task
//! filter, another loop, another worker) comes back as an [`Effect`].

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::model::{Focus, LoopChoice, Pane, UiState};

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Pause,
    Save,
    Reset,
    ThresholdUp,
    ThresholdDown,
    Sort,
    Tasks,
    Filter,
    NextLoop,
    Worker,
    Help,
    SwitchFocus,
    Up,
    Down,
}

/// The keys, as shown to users: `(keys, action, what it does)`. The first key of each row is
/// the one [`action`] is tested against.
pub const KEYS: &[(&str, Action, &str)] = &[
    ("q Esc Ctrl-C", Action::Quit, "quit"),
    ("p", Action::Pause, "pause / resume sampling"),
    ("s", Action::Save, "save an SVG flame graph of everything sampled so far"),
    ("r", Action::Reset, "reset the figures"),
    ("+ =", Action::ThresholdUp, "raise the blocking threshold"),
    ("- _", Action::ThresholdDown, "lower the blocking threshold"),
    ("o", Action::Sort, "sort the frames table (total, episodes, longest, name)"),
    ("t", Action::Tasks, "tasks pane (counts, longest pending) / episodes"),
    ("/", Action::Filter, "filter tasks by name (Enter keeps it, Esc clears it)"),
    ("l", Action::NextLoop, "show another loop (the worst one now, then each in turn)"),
    ("w Enter", Action::Worker, "--subprocesses: open the selected worker / back to all"),
    ("Tab", Action::SwitchFocus, "move the cursor between frames and episodes"),
    ("Up k", Action::Up, "select the row above"),
    ("Down j", Action::Down, "select the row below"),
    ("? h", Action::Help, "this help"),
];

/// The action of a key press (outside the task filter's text entry).
pub fn action(key: KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Action::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Char('s') => Action::Save,
        KeyCode::Char('r') => Action::Reset,
        KeyCode::Char('+') | KeyCode::Char('=') => Action::ThresholdUp,
        KeyCode::Char('-') | KeyCode::Char('_') => Action::ThresholdDown,
        KeyCode::Char('o') => Action::Sort,
        KeyCode::Char('t') => Action::Tasks,
        KeyCode::Char('/') => Action::Filter,
        KeyCode::Char('l') => Action::NextLoop,
        KeyCode::Char('w') | KeyCode::Enter => Action::Worker,
        KeyCode::Char('?') | KeyCode::Char('h') => Action::Help,
        KeyCode::Tab | KeyCode::BackTab => Action::SwitchFocus,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        _ => return None,
    })
}

/// What the rest of `top` must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    Quit,
    Save,
    Reset,
    /// Pause (`true`) or resume sampling.
    Pause(bool),
    /// The task filter changed (apply it at once).
    Filter(String),
    /// Another loop is shown.
    Loop(LoopChoice),
    /// This worker's dashboard is shown (its index in the recording's processes), or the
    /// overview (`None`).
    Worker(Option<u16>),
}

/// Blocking thresholds `+`/`-` step through, in seconds.
pub const THRESHOLDS: &[f64] = &[0.010, 0.025, 0.050, 0.100, 0.200, 0.500, 1.0, 2.0, 5.0];

pub fn step_threshold(current: f64, up: bool) -> f64 {
    if up {
        THRESHOLDS.iter().copied().find(|t| *t > current + 1e-9).unwrap_or(current)
    } else {
        THRESHOLDS.iter().rev().copied().find(|t| *t < current - 1e-9).unwrap_or(current)
    }
}

/// Handle a key press: the task filter's text entry when it is open, else [`action`] and
/// [`apply`]. `loops`: how many loops there are (for `l`).
pub fn handle(ui: &mut UiState, key: KeyEvent, loops: usize) -> Effect {
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
            _ => return Effect::None,
        }
        return Effect::Filter(ui.filter.clone());
    }
    match action(key) {
        Some(a) => apply(ui, a, loops),
        None => Effect::None,
    }
}

/// Change the UI state for an action.
pub fn apply(ui: &mut UiState, a: Action, loops: usize) -> Effect {
    match a {
        Action::Quit => return Effect::Quit,
        Action::Pause => {
            ui.paused = !ui.paused;
            return Effect::Pause(ui.paused);
        }
        Action::Save => return Effect::Save,
        Action::Reset => return Effect::Reset,
        Action::ThresholdUp => ui.threshold = step_threshold(ui.threshold, true),
        Action::ThresholdDown => ui.threshold = step_threshold(ui.threshold, false),
        Action::Sort => ui.sort = ui.sort.next(),
        Action::Tasks => ui.pane = if ui.pane == Pane::Tasks { Pane::Episodes } else { Pane::Tasks },
        Action::Filter => {
            ui.pane = Pane::Tasks;
            ui.editing_filter = true;
        }
        Action::NextLoop => {
            ui.loop_choice = ui.loop_choice.next(loops);
            ui.selected_episode = 0;
            ui.selected_frame = 0;
            return Effect::Loop(ui.loop_choice);
        }
        Action::Worker => {
            if !ui.fleet {
                ui.message = Some("w: workers are watched with --subprocesses".into());
                return Effect::None;
            }
            ui.worker = match ui.worker {
                None => Some(ui.selected_worker.min(u16::MAX as usize) as u16),
                Some(_) => None,
            };
            ui.loop_choice = LoopChoice::Worst;
            ui.selected_episode = 0;
            ui.selected_frame = 0;
            return Effect::Worker(ui.worker);
        }
        Action::Help => ui.help = !ui.help,
        Action::SwitchFocus => ui.focus = if ui.focus == Focus::Frames { Focus::Episodes } else { Focus::Frames },
        Action::Up if ui.overview() => ui.selected_worker = ui.selected_worker.saturating_sub(1),
        Action::Down if ui.overview() => ui.selected_worker += 1,
        Action::Up => match ui.focus {
            Focus::Frames => ui.selected_frame = ui.selected_frame.saturating_sub(1),
            Focus::Episodes => ui.selected_episode = ui.selected_episode.saturating_sub(1),
        },
        Action::Down => match ui.focus {
            Focus::Frames => ui.selected_frame += 1,
            Focus::Episodes => ui.selected_episode += 1,
        },
    }
    Effect::None
}

/// The keys as help lines: `keys  what it does`, one per line, aligned.
pub fn help_lines() -> Vec<String> {
    let width = KEYS.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    KEYS.iter().map(|(k, _, what)| format!("{k:<width$}  {what}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    /// A key name from the table, as the terminal sends it.
    fn key_of(name: &str) -> KeyEvent {
        match name {
            "Esc" => press(KeyCode::Esc),
            "Tab" => press(KeyCode::Tab),
            "Up" => press(KeyCode::Up),
            "Down" => press(KeyCode::Down),
            "Enter" => press(KeyCode::Enter),
            "Ctrl-C" => KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            c if c.chars().count() == 1 => press(KeyCode::Char(c.chars().next().unwrap())),
            other => panic!("no key named {other}"),
        }
    }

    #[test]
    fn every_key_in_the_table_does_what_the_table_says() {
        for (keys, act, _) in KEYS {
            for k in keys.split_whitespace() {
                assert_eq!(action(key_of(k)), Some(*act), "{k}");
            }
        }
        // And a key not in the table does nothing.
        assert_eq!(action(press(KeyCode::Char('z'))), None);
        assert_eq!(action(press(KeyCode::F(5))), None);
    }

    #[test]
    fn actions_change_the_state_they_name() {
        let mut ui = UiState::new(0.1, false);
        assert_eq!(apply(&mut ui, Action::Pause, 1), Effect::Pause(true));
        assert_eq!(apply(&mut ui, Action::Pause, 1), Effect::Pause(false));
        apply(&mut ui, Action::ThresholdUp, 1);
        assert_eq!(ui.threshold, 0.2);
        apply(&mut ui, Action::ThresholdDown, 1);
        apply(&mut ui, Action::ThresholdDown, 1);
        assert_eq!(ui.threshold, 0.05);
        assert_eq!(apply(&mut ui, Action::Tasks, 1), Effect::None);
        assert_eq!(ui.pane, Pane::Tasks);
        apply(&mut ui, Action::SwitchFocus, 1);
        assert_eq!(ui.focus, Focus::Frames);
        apply(&mut ui, Action::Down, 1);
        apply(&mut ui, Action::Down, 1);
        apply(&mut ui, Action::Up, 1);
        assert_eq!(ui.selected_frame, 1);
        apply(&mut ui, Action::Help, 1);
        assert!(ui.help);
        assert_eq!(apply(&mut ui, Action::Quit, 1), Effect::Quit);
        assert_eq!(apply(&mut ui, Action::Save, 1), Effect::Save);
        assert_eq!(apply(&mut ui, Action::Reset, 1), Effect::Reset);
    }

    #[test]
    fn l_goes_from_the_worst_loop_through_each_and_back() {
        let mut ui = UiState::new(0.1, false);
        assert_eq!(ui.loop_choice, LoopChoice::Worst);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let Effect::Loop(c) = apply(&mut ui, Action::NextLoop, 3) else { panic!() };
            seen.push(c);
        }
        assert_eq!(seen, [LoopChoice::Fixed(0), LoopChoice::Fixed(1), LoopChoice::Fixed(2), LoopChoice::Worst]);
        // One loop: nothing to switch to.
        let mut ui = UiState::new(0.1, false);
        let Effect::Loop(c) = apply(&mut ui, Action::NextLoop, 1) else { panic!() };
        assert_eq!(c, LoopChoice::Worst);
    }

    #[test]
    fn w_focuses_the_selected_worker_and_comes_back() {
        let mut ui = UiState::new(0.1, false);
        // One process: nothing to focus, and it says why.
        assert_eq!(apply(&mut ui, Action::Worker, 1), Effect::None);
        assert!(ui.message.is_some() && ui.worker.is_none());
        let mut ui = UiState::new(0.1, false);
        ui.fleet = true;
        assert!(ui.overview());
        // Up and down move the overview's cursor, not the dashboard's.
        apply(&mut ui, Action::Down, 1);
        apply(&mut ui, Action::Down, 1);
        apply(&mut ui, Action::Up, 1);
        assert_eq!((ui.selected_worker, ui.selected_episode), (1, 0));
        ui.loop_choice = LoopChoice::Fixed(2);
        assert_eq!(handle(&mut ui, press(KeyCode::Enter), 3), Effect::Worker(Some(1)));
        assert!(!ui.overview());
        assert_eq!(ui.loop_choice, LoopChoice::Worst);
        // In a worker's dashboard, up and down are the dashboard's again.
        apply(&mut ui, Action::Down, 1);
        assert_eq!((ui.selected_worker, ui.selected_episode), (1, 1));
        assert_eq!(handle(&mut ui, press(KeyCode::Char('w')), 3), Effect::Worker(None));
        assert!(ui.overview());
        // Enter while typing a filter keeps the filter: it does not focus a worker.
        handle(&mut ui, press(KeyCode::Char('/')), 3);
        assert_eq!(handle(&mut ui, press(KeyCode::Enter), 3), Effect::Filter(String::new()));
        assert!(ui.overview());
    }

    #[test]
    fn the_filter_takes_text_until_enter_or_esc() {
        let mut ui = UiState::new(0.1, false);
        assert_eq!(handle(&mut ui, press(KeyCode::Char('/')), 1), Effect::None);
        assert!(ui.editing_filter && ui.pane == Pane::Tasks);
        // While typing, q is a letter, not quit.
        for c in "q1".chars() {
            handle(&mut ui, press(KeyCode::Char(c)), 1);
        }
        assert_eq!(handle(&mut ui, press(KeyCode::Backspace), 1), Effect::Filter("q".into()));
        assert_eq!(handle(&mut ui, press(KeyCode::Enter), 1), Effect::Filter("q".into()));
        assert!(!ui.editing_filter);
        handle(&mut ui, press(KeyCode::Char('/')), 1);
        assert_eq!(handle(&mut ui, press(KeyCode::Esc), 1), Effect::Filter(String::new()));
    }

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
