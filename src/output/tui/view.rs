//! Drawing the dashboard with ratatui. Knows the model, nothing about memory or processes.
//! Works at 80x24 (charts side by side, short tables) and uses the room it gets.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, List, ListItem, ListState, Paragraph, Row, Sparkline, Table, TableState, Wrap};
use ratatui::Frame;

use super::model::{Focus, Overview, Pane, Severity, TopModel, UiState};
use crate::base::units::ms_text;

/// Styles that degrade to plain text without colour (`NO_COLOR`, dumb terminals).
struct Palette {
    color: bool,
}

impl Palette {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    fn severity(&self, s: Severity) -> Style {
        let base = Style::default().add_modifier(Modifier::BOLD);
        if !self.color {
            return if s == Severity::Alert { base.add_modifier(Modifier::REVERSED) } else { base };
        }
        match s {
            Severity::Alert => base.fg(Color::White).bg(Color::Red),
            Severity::Warn => base.fg(Color::Yellow),
            Severity::Ok => base.fg(Color::Green),
            Severity::Info => base.fg(Color::Cyan),
        }
    }

    fn selected(&self) -> Style {
        if self.color {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }
}

fn block(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(title)
}

/// Draw everything.
pub fn draw(f: &mut Frame, m: &TopModel, ui: &UiState) {
    let p = Palette { color: ui.color };
    let area = f.area();
    let tall = area.height >= 40;
    let chart_h = if tall { 9 } else { 5 };
    let header_lines = if m.header.chars().count() + 12 > area.width as usize { 2 } else { 1 };
    let state_lines = if m.state.text.chars().count() > area.width as usize { 2 } else { 1 };
    // The diagnosis: up to 2 lines (3 on a tall screen), cut after that.
    let diagnosis_lines = match &m.diagnosis {
        None => 0,
        Some(d) => ((d.chars().count().div_ceil((area.width as usize).max(1))) as u16).clamp(1, if tall { 3 } else { 2 }),
    };
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(header_lines),
            Constraint::Length(state_lines),
            Constraint::Length(diagnosis_lines),
            Constraint::Length(chart_h),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .split(area);

    f.render_widget(
        Paragraph::new(Line::from(vec![Span::styled("loopspy top ", p.fg(Color::Cyan)), Span::raw(m.header.as_str())]))
            .wrap(Wrap { trim: true }),
        rows[0],
    );
    f.render_widget(Paragraph::new(m.state.text.as_str()).style(p.severity(m.state.severity)).wrap(Wrap { trim: true }), rows[1]);
    if let Some(d) = &m.diagnosis {
        f.render_widget(Paragraph::new(d.as_str()).style(p.severity(Severity::Warn)).wrap(Wrap { trim: true }), rows[2]);
    }
    let rows = [rows[0], rows[1], rows[3], rows[4], rows[5], rows[6]];

    // Charts: the last minute, one bar per second.
    let charts = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Ratio(1, 3), Constraint::Ratio(1, 3), Constraint::Ratio(1, 3)])
        .split(rows[2]);
    let spark = |data: &[u64], inner: Rect| -> Vec<u64> {
        let w = inner.width.saturating_sub(2) as usize;
        data[data.len().saturating_sub(w)..].to_vec()
    };
    let compact = |ms: f64| ms_text(ms).replace(' ', "");
    let lag_title = format!("lag {}, peak {}", compact(m.lag_now_ms), compact(m.lag_peak_ms));
    let ready_title = format!("ready {}, peak {}", m.ready_now, m.ready_max.iter().max().copied().unwrap_or(0));
    let busy_title = format!("busy {:.0}% (per s)", m.busy_now_pct);
    for (i, (title, data, color)) in
        [(lag_title, &m.lag_max_ms, Color::Red), (ready_title, &m.ready_max, Color::Yellow), (busy_title, &m.busy_pct, Color::Magenta)]
            .into_iter()
            .enumerate()
    {
        let values = spark(data, charts[i]);
        let mut s = Sparkline::default().block(block(&title)).data(&values).style(p.fg(color));
        if i == 2 {
            s = s.max(100);
        }
        f.render_widget(s, charts[i]);
    }

    // Top blocking frames.
    let header = Row::new(["function", "file:line", "total", "n", "longest", "how"]).style(Style::default().add_modifier(Modifier::BOLD));
    let rows_data: Vec<Row> = m
        .frames
        .iter()
        .map(|fr| {
            Row::new(vec![
                Cell::from(fr.function.clone()),
                Cell::from(if fr.file.is_empty() { String::new() } else { format!("{}:{}", fr.file, fr.line) }),
                Cell::from(compact(fr.blocked_ms)),
                Cell::from(fr.episodes.to_string()),
                Cell::from(compact(fr.longest_ms)),
                Cell::from(if fr.on_cpu { "CPU".to_string() } else { fr.waiting_in.clone().unwrap_or_default() }),
            ])
        })
        .collect();
    let frames_title = format!("Top blocking frames (>= {:.0} ms, sort: {}, o)", m.threshold_ms, m.sort.label());
    let table = Table::new(
        rows_data,
        [
            Constraint::Fill(2),
            Constraint::Fill(3),
            Constraint::Length(7),
            Constraint::Length(3),
            Constraint::Length(7),
            Constraint::Length(15),
        ],
    )
    .header(header)
    .block(block(&frames_title))
    .row_highlight_style(if ui.focus == Focus::Frames { p.selected() } else { Style::default() });
    let mut ts = TableState::default();
    if !m.frames.is_empty() {
        ts.select(Some(ui.selected_frame.min(m.frames.len() - 1)));
    }
    f.render_stateful_widget(table, rows[3], &mut ts);

    if ui.pane == Pane::Tasks {
        draw_tasks(f, m, ui, rows[4], &p);
    } else {
        draw_episodes(f, m, ui, rows[4], &p);
    }

    let warned = ui.message.is_none() && !ui.editing_filter && m.warning.is_some();
    let footer = match &ui.message {
        Some(msg) => msg.clone(),
        None if warned => m.warning.clone().unwrap_or_default(),
        None if ui.editing_filter => format!("filter tasks by name: {}_  (Enter keeps it, Esc clears it)", ui.filter),
        None => {
            format!("q quit  p pause  s save SVG  r reset  +/- threshold ({:.0} ms)  t tasks  o sort  tab select  ? help", m.threshold_ms)
        }
    };
    let footer_style = if warned { p.severity(Severity::Alert) } else { p.fg(Color::DarkGray) };
    f.render_widget(Paragraph::new(footer).style(footer_style), rows[5]);

    if ui.help {
        draw_help(f, area);
    }
}

/// Draw the overview of workers (`--subprocesses`): one row per process.
pub fn draw_overview(f: &mut Frame, ov: &Overview, ui: &UiState) {
    let p = Palette { color: ui.color };
    let area = f.area();
    // The header wraps (a master's command can be long): up to 3 lines.
    let width = (area.width as usize).max(1);
    let header_lines = ((ov.header.chars().count() + 12).div_ceil(width) as u16).clamp(1, 3);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(header_lines), Constraint::Fill(1), Constraint::Length(1)])
        .split(area);
    f.render_widget(
        Paragraph::new(Line::from(vec![Span::styled("loopspy top ", p.fg(Color::Cyan)), Span::raw(ov.header.as_str())]))
            .wrap(Wrap { trim: true }),
        rows[0],
    );
    let compact = |ms: f64| ms_text(ms).replace(' ', "");
    let header = Row::new(["PID", "command", "lag now", "busy", "episodes", "now"]).style(Style::default().add_modifier(Modifier::BOLD));
    let table_rows: Vec<Row> = ov
        .rows
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(r.pid.to_string()),
                Cell::from(r.command.clone()),
                Cell::from(r.lag_now_ms.map(compact).unwrap_or_else(|| "?".into())),
                Cell::from(format!("{:.0}%", r.busy_now_pct)),
                Cell::from(r.episodes.to_string()),
                Cell::from(Span::styled(r.now.text(), p.severity(r.now.severity()))),
            ])
        })
        .collect();
    let title = format!("Workers (>= {:.0} ms is blocked; up/down select, w or Enter: its dashboard)", ov.threshold_ms);
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(8),
            Constraint::Fill(2),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Fill(3),
        ],
    )
    .header(header)
    .block(block(&title))
    .row_highlight_style(p.selected());
    let mut ts = TableState::default();
    if !ov.rows.is_empty() {
        ts.select(Some(ui.selected_worker.min(ov.rows.len() - 1)));
    }
    f.render_stateful_widget(table, rows[1], &mut ts);
    let warned = ui.message.is_none() && ov.warning.is_some();
    let footer = match &ui.message {
        Some(msg) => msg.clone(),
        None if warned => ov.warning.clone().unwrap_or_default(),
        None => format!("q quit  w/Enter worker  p pause  s save SVG  r reset  +/- threshold ({:.0} ms)  ? help", ov.threshold_ms),
    };
    let footer_style = if warned { p.severity(Severity::Alert) } else { p.fg(Color::DarkGray) };
    f.render_widget(Paragraph::new(footer).style(footer_style), rows[2]);
    if ui.help {
        draw_help(f, area);
    }
}

fn draw_tasks(f: &mut Frame, m: &TopModel, ui: &UiState, area: Rect, p: &Palette) {
    let Some(t) = &m.tasks else {
        f.render_widget(Paragraph::new("counting tasks...").block(block("Tasks (t: episodes)")), area);
        return;
    };
    let c = &t.counts;
    let filter = if ui.filter.is_empty() { String::new() } else { format!(", {} matching \"{}\"", t.matching, ui.filter) };
    let title = format!(
        "Tasks: {} pending, {} done, {} cancelled{filter} (counted {:.0} s ago; / filter, t episodes)",
        c.pending, c.done, c.cancelled, t.age_s
    );
    let header = Row::new(["task", "pending for", "suspended at"]).style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = t
        .rows
        .iter()
        .map(|r| {
            let age = if r.running { "RUNNING".to_string() } else { format!(">= {}", ms_text(r.pending_for_s * 1e3)) };
            Row::new(vec![Cell::from(r.name.clone()), Cell::from(age), Cell::from(r.at.clone())])
        })
        .collect();
    let table = Table::new(rows, [Constraint::Fill(2), Constraint::Length(12), Constraint::Fill(5)])
        .header(header)
        .block(block(&title))
        .style(p.fg(Color::Reset));
    // The largest groups of pending tasks above the list, when the pane has room.
    let lines = task_group_lines(t, area.height.saturating_sub(8) as usize);
    if lines.is_empty() {
        f.render_widget(table, area);
        return;
    }
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(lines.len() as u16 + 2), Constraint::Fill(1)])
        .split(area);
    let heading = match &t.groups {
        Some(g) if g.sampled => format!("Pending tasks by coroutine and what they wait on ({} of {} examined)", g.examined, g.pending),
        _ => "Pending tasks by coroutine and what they wait on".to_string(),
    };
    f.render_widget(Paragraph::new(lines.into_iter().map(Line::raw).collect::<Vec<_>>()).block(block(&heading)), parts[0]);
    f.render_widget(table, parts[1]);
}

/// At most `room` (and 4) lines, one per group, largest first (escaped for the terminal).
fn task_group_lines(t: &crate::capture::task_pane::TaskPane, room: usize) -> Vec<String> {
    let Some(g) = &t.groups else { return Vec::new() };
    let approx = if g.sampled { "~" } else { "" };
    g.groups.iter().take(room.min(4)).map(|x| format!("{approx}{:>6} {}", x.estimated, crate::output::dump::task_group_text(x))).collect()
}

fn draw_episodes(f: &mut Frame, m: &TopModel, ui: &UiState, area: Rect, p: &Palette) {
    let compact = |ms: f64| ms_text(ms).replace(' ', "");
    // Recent episodes and the selected one's stack.
    let bottom = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(area);
    let items: Vec<ListItem> = m
        .episodes
        .iter()
        .map(|e| {
            let how = if e.on_cpu { "CPU".to_string() } else { e.waiting_in.clone().unwrap_or_default() };
            ListItem::new(format!(
                "{:>6.1}s {:>6} {}{} {}",
                e.start_s,
                compact(e.duration_ms),
                e.function,
                if e.ongoing { " (now)" } else { "" },
                how,
            ))
        })
        .collect();
    let list = List::new(items).block(block("Recent episodes (tab, up/down)")).highlight_style(if ui.focus == Focus::Episodes {
        p.selected()
    } else {
        Style::default()
    });
    let mut ls = ListState::default();
    if !m.episodes.is_empty() {
        ls.select(Some(ui.selected_episode.min(m.episodes.len() - 1)));
    }
    f.render_stateful_widget(list, bottom[0], &mut ls);
    let stack: Vec<Line> = m.stack.iter().map(|s| Line::raw(s.as_str())).collect();
    f.render_widget(Paragraph::new(stack).block(block("Stack of the selected episode")).wrap(Wrap { trim: false }), bottom[1]);
}

fn draw_help(f: &mut Frame, area: Rect) {
    let text = vec![
        // At most 7 lines here: with the keys and the border, the help fits 80x24.
        Line::raw("loopspy top: the event loop, live"),
        Line::raw("State line: BLOCKED / busy (how long, where, which task, CPU or syscall),"),
        Line::raw("or idle in select with the lag and the ready queue. Charts: per second"),
        Line::raw("over the last minute: max loop lag, max ready depth, busy %. Figures and"),
        Line::raw("tables cover the session (since r). Several loops: the worst one now"),
        Line::raw("(l switches). --subprocesses: an overview of the workers, w opens one."),
        Line::raw(""),
    ]
    .into_iter()
    .chain(super::keys::help_lines().into_iter().map(Line::raw))
    .collect::<Vec<_>>();
    let w = 76.min(area.width);
    let h = (text.len() as u16 + 2).min(area.height);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, r);
    f.render_widget(Paragraph::new(text).block(block("help (? closes)")), r);
}
