//! The incident page (`--format html`): one self-contained HTML file (inline CSS, SVG and a
//! few lines of JavaScript; nothing fetched to view it) that shows, per loop, what the loop
//! went through over time (lag, ready-queue depth, busy share, pending tasks, one value per
//! second) with each blocking episode as a span on the same time axis, and below it the flame
//! graph in four views (full or focused on the callbacks, idle shown or hidden).
//!
//! The pure parts (the time scale and its ticks, the y scales, the episode spans' layout) are
//! functions tested on their own; every string from the target passes [`escape::html`].

use std::fmt::Write as _;

use crate::analysis::metrics::{Analysis, Episode, LoopSummary, Window};
use crate::base::escape;
use crate::base::units::ms_text;
use crate::capture::recording::Recording;
use crate::output::flamegraph::{short_path, View};

/// Width of the charts' drawing (the SVG's user units; the page is laid out for it).
pub const WIDTH: f64 = 1200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const CHART_H: f64 = 64.0;
const TITLE_H: f64 = 20.0;
const GAP: f64 = 10.0;
const LANE_H: f64 = 18.0;
const LANES: usize = 3;
/// Narrowest an episode's span is drawn (px): a 100 ms stall in an hour's recording stays
/// visible and hoverable.
pub const MIN_SPAN_PX: f64 = 3.0;

/// Seconds since the recording started → x in the charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub x0: f64,
    pub width: f64,
    /// Seconds shown (the recording's length; at least a tenth of a second).
    pub duration: f64,
}

impl Scale {
    pub fn new(x0: f64, width: f64, duration: f64) -> Self {
        let duration = if duration.is_finite() && duration > 0.1 { duration } else { 0.1 };
        Scale { x0, width, duration }
    }

    /// x of `t` seconds (clamped to the axis).
    pub fn x(&self, t: f64) -> f64 {
        let t = if t.is_finite() { t.clamp(0.0, self.duration) } else { 0.0 };
        self.x0 + self.width * t / self.duration
    }

    /// Ticks: a round step (1, 2, 5 × 10^k seconds; whole minutes and hours past a minute)
    /// giving at most `max` intervals, and the ticks from 0 to the end.
    pub fn ticks(&self, max: usize) -> (f64, Vec<f64>) {
        let step = tick_step(self.duration, max);
        let n = (self.duration / step + 1e-9).floor() as usize;
        (step, (0..=n).map(|i| i as f64 * step).collect())
    }
}

/// The tick step for `duration` seconds in at most `max` intervals.
pub fn tick_step(duration: f64, max: usize) -> f64 {
    let raw = duration / max.max(1) as f64;
    if raw > 30.0 {
        for step in [60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0] {
            if step >= raw {
                return step;
            }
        }
        return 86400.0 * (raw / 86400.0).ceil();
    }
    let mag = 10f64.powf(raw.max(1e-3).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw - 1e-12 {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A tick's label: `0 s`, `2.5 s`, `90 s`; with steps of minutes `5 min`, `1 h 30 min`.
pub fn time_label(t: f64, step: f64) -> String {
    if step >= 60.0 {
        let minutes = (t / 60.0).round() as u64;
        return match (minutes / 60, minutes % 60) {
            (0, m) => format!("{m} min"),
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        };
    }
    let decimals = if step >= 1.0 {
        0
    } else if step >= 0.1 {
        1
    } else {
        2
    };
    format!("{t:.decimals$} s")
}

/// The top of a y axis for values up to `v`: 1, 2, 2.5 or 5 × 10^k, at least `floor`.
pub fn nice_max(v: f64, floor: f64) -> f64 {
    let v = if v.is_finite() { v.max(floor) } else { floor };
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v - 1e-9 * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// One episode's span as drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub x: f64,
    pub w: f64,
    pub lane: usize,
}

/// Lay out spans (`(start s, duration s)`, in time order) on `lanes` rows: each at its true
/// place and width (at least `min_w` px); one that would touch the previous one on a row goes
/// to the next row, and when every row is taken, to the row that frees first.
pub fn layout_spans(scale: &Scale, spans: &[(f64, f64)], min_w: f64, lanes: usize) -> Vec<Span> {
    let lanes = lanes.max(1);
    let mut ends = vec![f64::NEG_INFINITY; lanes];
    spans
        .iter()
        .map(|&(start, dur)| {
            let x = scale.x(start);
            let w = (scale.x(start + dur.max(0.0)) - x).max(min_w);
            let lane = (0..lanes)
                .find(|&l| ends[l] + 1.0 <= x)
                .unwrap_or_else(|| (0..lanes).min_by(|&a, &b| ends[a].total_cmp(&ends[b])).unwrap_or(0));
            ends[lane] = ends[lane].max(x + w);
            Span { x, w, lane }
        })
        .collect()
}

/// What the page is made of.
pub struct Page<'a> {
    pub rec: &'a Recording,
    pub analysis: &'a Analysis,
    pub cwd: Option<&'a str>,
    /// Already plain text (escaped here).
    pub title: &'a str,
    pub subtitle: &'a str,
    /// The flame graph in each view (SVG documents).
    pub flames: Vec<(View, Vec<u8>)>,
    /// The view shown first (`--focus`, `--hide-idle`).
    pub initial: View,
}

const STYLE: &str = "
body { font-family: 'DejaVu Sans', Verdana, sans-serif; font-size: 14px; color: #222; background: #fff;
  margin: 0 auto; padding: 12px 16px 32px; max-width: 1220px; }
h1 { font-size: 19px; margin: 4px 0; }
h2 { font-size: 16px; margin: 20px 0 2px; }
p.sub, p.figures { margin: 2px 0; color: #444; }
p.note { color: #666; font-size: 13px; }
ul.diagnoses { margin: 4px 0; padding-left: 20px; }
svg.timeline { width: 100%; height: auto; display: block; }
svg.timeline text { font-family: 'DejaVu Sans', Verdana, sans-serif; font-size: 12px; fill: #333; }
svg.timeline text.title { font-weight: bold; }
svg.timeline text.axis { fill: #555; font-size: 11px; }
svg.timeline .grid { stroke: #e4e4e4; stroke-width: 1; }
svg.timeline .frame { stroke: #bbb; fill: none; }
svg.timeline g.episode rect { fill: #d62828; }
svg.timeline g.episode:hover rect { fill: #8b0000; }
svg.timeline g.episode text { fill: #fff; font-size: 11px; pointer-events: none; }
svg.timeline rect.shade { fill: #d62828; fill-opacity: 0.10; }
svg.timeline rect.second { fill: transparent; }
svg.timeline rect.second:hover { fill: #000; fill-opacity: 0.06; }
#flame-controls { margin: 8px 0; }
#flame-controls label { margin-right: 16px; }
iframe.flame { border: 1px solid #ddd; width: 100%; display: none; }
iframe.flame.initial { display: block; }
";

const SCRIPT: &str = "
(function () {
  var frames = document.querySelectorAll('iframe.flame');
  function show() {
    var focus = document.getElementById('view-focus').checked ? '1' : '0';
    var hide = document.getElementById('hide-idle').checked ? '1' : '0';
    for (var i = 0; i < frames.length; i++) {
      var f = frames[i];
      f.style.display = (f.getAttribute('data-focus') === focus && f.getAttribute('data-hide-idle') === hide) ? 'block' : 'none';
    }
  }
  // A link can ask for a view: page.html#focus,hide-idle (or #full, #show-idle).
  var asked = location.hash.replace('#', '').split(',');
  for (var i = 0; i < asked.length; i++) {
    if (asked[i] === 'focus') { document.getElementById('view-focus').checked = true; }
    if (asked[i] === 'full') { document.getElementById('view-full').checked = true; }
    if (asked[i] === 'hide-idle') { document.getElementById('hide-idle').checked = true; }
    if (asked[i] === 'show-idle') { document.getElementById('hide-idle').checked = false; }
  }
  function changed() {
    show();
    var hash = (document.getElementById('view-focus').checked ? 'focus' : 'full') + ',' +
      (document.getElementById('hide-idle').checked ? 'hide-idle' : 'show-idle');
    try { history.replaceState(null, '', '#' + hash); } catch (e) { location.hash = hash; }
  }
  var inputs = document.querySelectorAll('#flame-controls input');
  for (var i = 0; i < inputs.length; i++) { inputs[i].addEventListener('change', changed); }
  show();
  document.body.setAttribute('data-loopspy-ready', '1');
})();
";

/// The page.
pub fn page(p: &Page) -> String {
    let h = |s: &str| escape::html(s).into_owned();
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(out, "<title>{}</title>", h(p.title));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(out, "<header><h1>{}</h1><p class=\"sub\">{}</p></header>", h(p.title), h(p.subtitle));
    out.push_str("<section id=\"timeline\">\n");
    let scale = Scale::new(LEFT, WIDTH - LEFT - RIGHT, p.rec.duration());
    let mut loops: Vec<&LoopSummary> = p.analysis.loops.iter().collect();
    loops.sort_by_key(|l| (p.rec.process_of_loop(l.loop_index), l.loop_index));
    for l in loops {
        panel(&mut out, p, l, &scale);
    }
    out.push_str(
        "<p class=\"note\">One value per second (a long recording's seconds merged, about one per pixel: \
         lag and queue maxima the highest, busy share the mean). Red spans: blocking episodes (a callback that kept the loop \
         from select at least the threshold); hover one for its function, duration, task and what it waited in. \
         Hover a second for its figures.</p>\n</section>\n",
    );
    flames(&mut out, p);
    let _ = writeln!(out, "<script>{SCRIPT}</script>\n</body>\n</html>");
    out
}

/// A loop's heading, figures, diagnoses and charts.
fn panel(out: &mut String, p: &Page, l: &LoopSummary, scale: &Scale) {
    let h = |s: &str| escape::html(s).into_owned();
    let rec = p.rec;
    let Some(meta) = rec.loops.get(l.loop_index as usize) else { return };
    let thread = meta.thread_name.clone().unwrap_or_else(|| format!("thread {}", meta.native_id.unwrap_or(0)));
    let mut heading = format!("{} ({})", h(&thread), h(&meta.loop_class));
    if rec.is_fleet() {
        if let Some(proc_) = rec.process_of_loop(l.loop_index).and_then(|i| rec.processes.get(i as usize)) {
            heading = format!("{}: {heading}", h(&crate::output::flamegraph::process_label(proc_, rec.started)));
        }
    }
    let _ = writeln!(out, "<div class=\"loop\" data-loop=\"{}\">\n<h2>{heading}</h2>", l.loop_index);
    let mut figures = format!(
        "busy {:.1} %, lag p99 {} (max {}), ready queue max {}, {} blocking episode{}",
        l.busy_pct,
        ms_text(l.lag.p99_ms),
        ms_text(l.lag.max_ms),
        l.ready.max,
        l.episodes.len(),
        if l.episodes.len() == 1 { "" } else { "s" }
    );
    if let Some(t) = &l.tasks {
        let _ = write!(figures, ", pending tasks {} (max {}, {:+.1}/s)", t.pending_last, t.pending_max, t.pending_trend_per_s);
    }
    let _ = writeln!(out, "<p class=\"figures\">{figures}</p>");
    let diagnoses: Vec<_> = p.analysis.diagnoses.iter().filter(|d| d.loop_index == l.loop_index).collect();
    if !diagnoses.is_empty() {
        out.push_str("<ul class=\"diagnoses\">");
        for d in diagnoses {
            let _ = write!(out, "<li><b>{}</b>: {}</li>", h(&d.title), h(&d.next_step));
        }
        out.push_str("</ul>\n");
    }
    out.push_str(&timeline_svg(l, p.threshold_ms(), rec.duration(), scale, p.cwd));
    out.push_str("</div>\n");
}

impl Page<'_> {
    fn threshold_ms(&self) -> f64 {
        self.analysis.threshold_ms
    }
}

/// A chart's title, the top of its y axis, its legend (name, colour).
type ChartSpec<'a> = (&'a str, f64, &'a [(&'a str, &'a str)]);

/// One chart's place.
struct Chart {
    top: f64,
    bottom: f64,
    max: f64,
}

impl Chart {
    fn y(&self, v: f64) -> f64 {
        let v = if v.is_finite() { v.clamp(0.0, self.max) } else { 0.0 };
        self.bottom - (self.bottom - self.top) * v / self.max
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A step line over windows (`(start, end, value)`; `None`: no data, the line breaks).
fn step_path(scale: &Scale, chart: &Chart, points: &[(f64, f64, Option<f64>)]) -> String {
    let mut d = String::new();
    let mut open = false;
    for &(a, b, v) in points {
        match v {
            Some(v) => {
                let (xa, xb, y) = (scale.x(a), scale.x(b), chart.y(v));
                if open {
                    let _ = write!(d, " L{xa:.1},{y:.1} H{xb:.1}");
                } else {
                    let _ = write!(d, "M{xa:.1},{y:.1} H{xb:.1}");
                    open = true;
                }
            }
            None => open = false,
        }
    }
    d
}

/// The area under a step line, closed down to the chart's base at each break.
fn step_area(scale: &Scale, chart: &Chart, points: &[(f64, f64, Option<f64>)]) -> String {
    let mut d = String::new();
    let mut last_x: Option<f64> = None;
    let base = chart.bottom;
    for &(a, b, v) in points {
        match v {
            Some(v) => {
                let (xa, xb, y) = (scale.x(a), scale.x(b), chart.y(v));
                if last_x.is_none() {
                    let _ = write!(d, "M{xa:.1},{base:.1} ");
                }
                let _ = write!(d, "L{xa:.1},{y:.1} H{xb:.1} ");
                last_x = Some(xb);
            }
            None => {
                if let Some(x) = last_x.take() {
                    let _ = write!(d, "L{x:.1},{base:.1} Z ");
                }
            }
        }
    }
    if let Some(x) = last_x {
        let _ = write!(d, "L{x:.1},{base:.1} Z");
    }
    d
}

/// An episode's hover text, a line each: function (file:line), where the time went when
/// elsewhere, duration ± error and when, task, on CPU or the syscall (plain text: each line
/// is escaped by the caller, and the lines joined by line breaks).
pub fn episode_tip(e: &Episode, cwd: Option<&str>) -> Vec<String> {
    let mut tip = vec![format!("{} ({}:{})", e.function, short_path(&e.file, cwd), e.line)];
    if e.innermost.function != e.function {
        tip.push(format!("in {} ({}:{})", e.innermost.function, short_path(&e.innermost.file, cwd), e.innermost.line));
    }
    tip.push(format!(
        "{} ± {}{}, at {:.2} s",
        ms_text(e.duration_ms),
        ms_text(e.duration_error_ms),
        if e.ongoing { " (still running when the recording ended)" } else { "" },
        e.start_s
    ));
    if let Some(t) = &e.task {
        tip.push(format!("task \"{t}\""));
    }
    tip.push(match (&e.waiting_in, e.on_cpu) {
        (_, true) => "on CPU".to_string(),
        (Some(w), false) => format!("waiting in {w}"),
        (None, false) => "waiting".to_string(),
    });
    tip
}

/// Most columns a chart draws (about one per pixel): a long recording's seconds are merged.
pub const MAX_COLUMNS: usize = 1100;

/// The per-second windows as drawn: `(start, end, figures)`, at most `max` columns. When there
/// are more seconds than that, consecutive ones are merged: samples and episodes added, lag
/// (p99 and max) and the ready queue's max the highest of them, busy share and ready mean
/// averaged over their samples.
pub fn columns(windows: &[Window], width_s: f64, duration: f64, max: usize) -> Vec<(f64, f64, Window)> {
    let per = windows.len().div_ceil(max.max(1)).max(1);
    windows
        .chunks(per)
        .map(|group| {
            let first = &group[0];
            let end = (group[group.len() - 1].start_s + width_s).min(duration.max(first.start_s));
            if group.len() == 1 {
                return (first.start_s, end, first.clone());
            }
            let samples: u32 = group.iter().map(|w| w.samples).sum();
            let mean = |f: &dyn Fn(&Window) -> f64| {
                if samples == 0 {
                    0.0
                } else {
                    group.iter().map(|w| f(w) * w.samples as f64).sum::<f64>() / samples as f64
                }
            };
            let merged = Window {
                start_s: first.start_s,
                samples,
                busy_pct: mean(&|w| w.busy_pct),
                lag_p99_ms: group.iter().filter(|w| w.samples > 0).map(|w| w.lag_p99_ms).fold(0.0, f64::max),
                lag_max_ms: group.iter().filter(|w| w.samples > 0).map(|w| w.lag_max_ms).fold(0.0, f64::max),
                ready_mean: mean(&|w| w.ready_mean),
                ready_max: group.iter().map(|w| w.ready_max).max().unwrap_or(0),
                episodes: group.iter().map(|w| w.episodes).sum(),
            };
            (first.start_s, end, merged)
        })
        .collect()
}

/// A time in a hover text: `12.5 s`, `4:05`, `1:02:03`.
fn clock(t: f64) -> String {
    if t < 60.0 {
        return format!("{t:.1} s");
    }
    let s = t.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The charts of one loop over time, and its episodes.
fn timeline_svg(l: &LoopSummary, threshold_ms: f64, duration: f64, scale: &Scale, cwd: Option<&str>) -> String {
    let h = |s: &str| escape::html(s).into_owned();
    let width_s = match l.windows.as_slice() {
        [a, b, ..] if b.start_s > a.start_s => b.start_s - a.start_s,
        _ => 1.0,
    };
    let columns = columns(&l.windows, width_s, duration, MAX_COLUMNS);
    let has = |w: &Window| w.samples > 0;
    let series = |f: &dyn Fn(&Window) -> f64| -> Vec<(f64, f64, Option<f64>)> {
        columns.iter().map(|(a, b, w)| (*a, *b, has(w).then(|| f(w)))).collect()
    };
    let lag_p99 = series(&|w| w.lag_p99_ms);
    let lag_max = series(&|w| w.lag_max_ms);
    let ready_mean = series(&|w| w.ready_mean);
    let ready_max = series(&|w| w.ready_max as f64);
    let busy = series(&|w| w.busy_pct);
    let peak = |s: &[(f64, f64, Option<f64>)]| s.iter().filter_map(|p| p.2).fold(0.0f64, f64::max);
    let tasks: Vec<(f64, f64)> = l.task_series.iter().map(|p| (p.t_s, p.pending as f64)).collect();
    let tasks_peak = tasks.iter().map(|p| p.1).fold(0.0f64, f64::max);

    let mut svg = String::new();
    let mut y = 4.0;
    let mut charts: Vec<(Chart, &str)> = Vec::new();
    let mut body = String::new();
    // (title, top of the y axis, legend: (name, colour))
    let specs: [ChartSpec; 4] = [
        ("loop lag (ms): how late timers fire", nice_max(peak(&lag_max), 1.0), &[("p99", "#b03a2e"), ("max", "#e8a39b")]),
        ("ready queue (callbacks waiting)", nice_max(peak(&ready_max), 1.0), &[("mean", "#2c6fbb"), ("max", "#a9c6ea")]),
        ("busy (% of each second out of select)", 100.0, &[("busy", "#e08a1e")]),
        ("pending tasks", nice_max(tasks_peak, 1.0), &[("pending", "#4f8a2f")]),
    ];
    for (i, (title, max, legend)) in specs.iter().enumerate() {
        let chart = Chart { top: y + TITLE_H, bottom: y + TITLE_H + CHART_H, max: *max };
        let _ = write!(body, "<text class=\"title\" x=\"{:.1}\" y=\"{:.1}\">{title}</text>", scale.x0, y + 14.0);
        let mut lx = scale.x0 + 8.0 + 7.0 * title.len() as f64 + 16.0;
        for (name, color) in legend.iter() {
            let _ = write!(
                body,
                "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
                y + 9.0,
                lx + 18.0,
                y + 14.0
            );
            lx += 18.0 + 7.5 * name.len() as f64 + 14.0;
        }
        // y axis: 0, half, max, with grid lines.
        for frac in [0.0, 0.5, 1.0] {
            let v = max * frac;
            let yy = chart.y(v);
            let _ = write!(
                body,
                "<line class=\"grid\" x1=\"{:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\"/>\
                 <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                scale.x0,
                scale.x0 + scale.width,
                scale.x0 - 6.0,
                yy + 4.0,
                fmt_value(v) + if i == 2 { " %" } else { "" }
            );
        }
        y = chart.bottom + GAP;
        charts.push((chart, title));
    }
    let (lag_c, ready_c, busy_c, tasks_c) = (&charts[0].0, &charts[1].0, &charts[2].0, &charts[3].0);
    // The episodes, shaded across every chart.
    let spans: Vec<(f64, f64)> = l.episodes.iter().map(|e| (e.start_s, e.duration_ms / 1e3)).collect();
    let laid = layout_spans(scale, &spans, MIN_SPAN_PX, LANES);
    let lanes = laid.iter().map(|s| s.lane + 1).max().unwrap_or(1);
    let (charts_top, charts_bottom) = (charts[0].0.top, charts[3].0.bottom);
    let mut shades = String::new();
    for s in &laid {
        let _ = write!(
            shades,
            "<rect class=\"shade\" x=\"{:.1}\" y=\"{charts_top:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
            s.x,
            s.w,
            charts_bottom - charts_top
        );
    }
    // Time grid.
    let (step, ticks) = scale.ticks(12);
    let mut grid = String::new();
    for &t in &ticks {
        let x = scale.x(t);
        let _ = write!(
            grid,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{charts_top:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>",
            y + lanes as f64 * LANE_H + TITLE_H
        );
    }
    svg.push_str(&grid);
    svg.push_str(&shades);
    svg.push_str(&body);
    // The series.
    let _ = write!(
        svg,
        "<path class=\"series lag-max\" d=\"{}\" fill=\"none\" stroke=\"#e8a39b\" stroke-width=\"2\"/>",
        step_path(scale, lag_c, &lag_max)
    );
    let _ = write!(
        svg,
        "<path class=\"series lag-p99\" d=\"{}\" fill=\"none\" stroke=\"#b03a2e\" stroke-width=\"2\"/>",
        step_path(scale, lag_c, &lag_p99)
    );
    let _ = write!(
        svg,
        "<path class=\"series ready-max\" d=\"{}\" fill=\"#a9c6ea\" fill-opacity=\"0.7\"/>",
        step_area(scale, ready_c, &ready_max)
    );
    let _ = write!(
        svg,
        "<path class=\"series ready-mean\" d=\"{}\" fill=\"none\" stroke=\"#2c6fbb\" stroke-width=\"2\"/>",
        step_path(scale, ready_c, &ready_mean)
    );
    let _ = write!(svg, "<path class=\"series busy\" d=\"{}\" fill=\"#e08a1e\" fill-opacity=\"0.75\"/>", step_area(scale, busy_c, &busy));
    if tasks.is_empty() {
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\">no task counts in this recording</text>",
            scale.x0 + 10.0,
            (tasks_c.top + tasks_c.bottom) / 2.0
        );
    } else {
        let points: Vec<String> = tasks.iter().map(|&(t, v)| format!("{:.1},{:.1}", scale.x(t), tasks_c.y(v))).collect();
        let _ = write!(
            svg,
            "<polyline class=\"series tasks\" points=\"{}\" fill=\"none\" stroke=\"#4f8a2f\" stroke-width=\"2\"/>",
            points.join(" ")
        );
        if tasks.len() <= 200 {
            for &(t, v) in &tasks {
                let _ = write!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#4f8a2f\"/>", scale.x(t), tasks_c.y(v));
            }
        }
    }
    for (c, _) in &charts {
        let _ = write!(
            svg,
            "<rect class=\"frame\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
            scale.x0,
            c.top,
            scale.width,
            c.bottom - c.top
        );
    }
    // Hover a second (or a column of seconds): its figures.
    for (a, b, w) in &columns {
        let (a, b) = (*a, *b);
        let tip = if has(w) {
            format!(
                "{} to {}: lag p99 {} ms, max {} ms; ready mean {}, max {}; busy {:.0} %; {} episode{} began",
                clock(a),
                clock(b),
                fmt_value(w.lag_p99_ms),
                fmt_value(w.lag_max_ms),
                fmt_value(w.ready_mean),
                w.ready_max,
                w.busy_pct,
                w.episodes,
                if w.episodes == 1 { "" } else { "s" }
            )
        } else {
            format!("{} to {}: no samples", clock(a), clock(b))
        };
        let _ = write!(
            svg,
            "<rect class=\"second\" x=\"{:.1}\" y=\"{charts_top:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{tip}</title></rect>",
            scale.x(a),
            (scale.x(b) - scale.x(a)).max(0.5),
            charts_bottom - charts_top
        );
    }
    // The episodes' lanes.
    let lane_top = y + TITLE_H;
    let _ = write!(
        svg,
        "<text class=\"title\" x=\"{:.1}\" y=\"{:.1}\">blocking episodes (callbacks ≥ {} ms): {}</text>",
        scale.x0,
        y + 14.0,
        fmt_value(threshold_ms),
        l.episodes.len()
    );
    let _ = write!(
        svg,
        "<rect class=\"frame\" x=\"{:.1}\" y=\"{lane_top:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
        scale.x0,
        scale.width,
        lanes as f64 * LANE_H
    );
    for (e, s) in l.episodes.iter().zip(&laid) {
        let sy = lane_top + s.lane as f64 * LANE_H + 2.0;
        let _ = write!(
            svg,
            "<g class=\"episode\" data-start=\"{:.3}\" data-ms=\"{:.1}\"><title>{}</title><rect x=\"{:.1}\" y=\"{sy:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\"/>",
            e.start_s,
            e.duration_ms,
            episode_tip(e, cwd).iter().map(|line| h(line)).collect::<Vec<_>>().join("\n"),
            s.x,
            s.w,
            LANE_H - 4.0
        );
        let label = format!("{} {}", e.function, ms_text(e.duration_ms));
        if s.w >= 7.0 * label.chars().count() as f64 + 8.0 {
            let _ = write!(svg, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", s.x + 4.0, sy + LANE_H - 8.0, h(&label));
        }
        svg.push_str("</g>");
    }
    let axis_y = lane_top + lanes as f64 * LANE_H + 16.0;
    for &t in &ticks {
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{axis_y:.1}\" text-anchor=\"middle\">{}</text>",
            scale.x(t),
            time_label(t, step)
        );
    }
    let total_h = axis_y + 20.0;
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time since the recording started</text>",
        scale.x0 + scale.width / 2.0,
        total_h - 2.0
    );
    format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH:.0} {total_h:.0}\" width=\"{WIDTH:.0}\" height=\"{total_h:.0}\">{svg}</svg>\n"
    )
}

/// The flame graph's four views, one shown at a time.
fn flames(out: &mut String, p: &Page) {
    out.push_str("<section id=\"flame\">\n<h2>Flame graph</h2>\n<div id=\"flame-controls\">");
    let checked = |b: bool| if b { " checked" } else { "" };
    let _ = write!(
        out,
        "<label><input type=\"radio\" name=\"view\" id=\"view-full\"{}> full stacks</label>\
         <label><input type=\"radio\" name=\"view\" id=\"view-focus\"{}> focus: from the callback (the loop's own frames folded away)</label>\
         <label><input type=\"checkbox\" id=\"hide-idle\"{}> hide idle time</label>",
        checked(!p.initial.focus),
        checked(p.initial.focus),
        checked(p.initial.hide_idle)
    );
    out.push_str("</div>\n");
    for (view, svg) in &p.flames {
        let height = svg_height(svg).unwrap_or(600.0);
        let _ = writeln!(
            out,
            "<iframe class=\"flame{}\" data-focus=\"{}\" data-hide-idle=\"{}\" title=\"flame graph\" height=\"{:.0}\" src=\"data:image/svg+xml;base64,{}\"></iframe>",
            if *view == p.initial { " initial" } else { "" },
            view.focus as u8,
            view.hide_idle as u8,
            height + 6.0,
            base64(svg)
        );
    }
    out.push_str(
        "<p class=\"note\">Width is wall time of the loop's thread. Red: blocking the loop; orange: busy in shorter callbacks; \
         grey-blue: idle in select. Click a frame to zoom, hover it for its time.</p>\n</section>\n",
    );
}

/// The `height` of an SVG document's root element.
fn svg_height(svg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(&svg[..svg.len().min(4096)]).ok().or_else(|| std::str::from_utf8(svg).ok())?;
    let at = text.find("<svg")?;
    let rest = &text[at..];
    let h = rest.find(" height=\"")? + 9;
    rest[h..].split('"').next()?.parse().ok()
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::metrics::{analyze, tests::script, Options};

    #[test]
    fn time_scale_and_ticks() {
        let s = Scale::new(70.0, 1110.0, 6.5);
        assert_eq!(s.x(0.0), 70.0);
        assert_eq!(s.x(6.5), 1180.0);
        assert_eq!(s.x(-3.0), 70.0, "clamped");
        assert_eq!(s.x(99.0), 1180.0, "clamped");
        assert_eq!(s.x(f64::NAN), 70.0);
        let (step, ticks) = s.ticks(12);
        assert_eq!(step, 1.0);
        assert_eq!(ticks, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // Round steps at every length, never more than asked.
        for (duration, step) in [(0.5, 0.05), (3.0, 0.5), (30.0, 5.0), (100.0, 10.0), (600.0, 60.0), (3600.0, 300.0), (86400.0, 7200.0)] {
            assert_eq!(tick_step(duration, 12), step, "{duration}");
            let (_, ticks) = Scale::new(0.0, 100.0, duration).ticks(12);
            assert!(ticks.len() <= 13 && ticks.len() >= 6, "{duration}: {ticks:?}");
        }
        assert_eq!(Scale::new(0.0, 100.0, 0.0).duration, 0.1, "an empty recording still has an axis");
        assert_eq!(time_label(0.0, 1.0), "0 s");
        assert_eq!(time_label(2.5, 0.5), "2.5 s");
        assert_eq!(time_label(0.15, 0.05), "0.15 s");
        assert_eq!(time_label(300.0, 60.0), "5 min");
        assert_eq!(time_label(5400.0, 1800.0), "1 h 30 min");
        assert_eq!(time_label(7200.0, 3600.0), "2 h");
    }

    #[test]
    fn y_axes_end_at_round_numbers() {
        assert_eq!(nice_max(0.0, 1.0), 1.0);
        assert_eq!(nice_max(383.0, 1.0), 500.0);
        assert_eq!(nice_max(26.0, 1.0), 50.0);
        assert_eq!(nice_max(20.0, 1.0), 20.0);
        assert_eq!(nice_max(2.1, 1.0), 2.5);
        assert_eq!(nice_max(f64::INFINITY, 1.0), 1.0);
        assert_eq!(nice_max(0.003, 0.0), 0.005);
    }

    #[test]
    fn spans_keep_their_time_and_stay_visible() {
        let s = Scale::new(0.0, 1000.0, 100.0); // 10 px per second
        let laid = layout_spans(&s, &[(1.0, 2.0), (3.5, 0.01), (3.6, 0.01), (3.7, 0.01), (3.8, 0.01), (50.0, 0.25)], 3.0, 3);
        assert_eq!(laid[0], Span { x: 10.0, w: 20.0, lane: 0 });
        // A short episode gets the least width; neighbours closer than that go one row down.
        assert_eq!((laid[1].x, laid[1].w, laid[1].lane), (35.0, 3.0, 0));
        assert_eq!((laid[2].x, laid[2].lane), (36.0, 1));
        assert_eq!(laid[3].lane, 2);
        // Every row taken: the one that frees first.
        assert_eq!(laid[4].lane, 0);
        assert_eq!(laid[5], Span { x: 500.0, w: 3.0, lane: 0 });
    }

    #[test]
    fn long_recordings_merge_seconds_into_columns() {
        let w = |k: usize, samples: u32, lag: f64, busy: f64| Window {
            start_s: k as f64,
            samples,
            busy_pct: busy,
            lag_p99_ms: lag,
            lag_max_ms: lag * 2.0,
            ready_mean: 1.0,
            ready_max: k as u32,
            episodes: 1,
        };
        let windows: Vec<Window> = (0..10).map(|k| w(k, if k == 3 { 0 } else { 100 }, k as f64, 10.0 * k as f64)).collect();
        // Few seconds: one column each, the last cut at the recording's end.
        let c = columns(&windows, 1.0, 9.5, 100);
        assert_eq!(c.len(), 10);
        assert_eq!((c[9].0, c[9].1), (9.0, 9.5));
        assert_eq!(c[4].2, windows[4]);
        // Many: merged, figures as the doc says; a second without samples adds nothing.
        let c = columns(&windows, 1.0, 10.0, 3);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].0, c[0].1), (0.0, 4.0));
        let m = &c[0].2;
        assert_eq!((m.samples, m.episodes, m.ready_max), (300, 4, 3));
        assert_eq!((m.lag_p99_ms, m.lag_max_ms), (2.0, 4.0));
        assert!((m.busy_pct - 10.0).abs() < 1e-9, "{}", m.busy_pct);
        assert_eq!(c[2].0, 8.0);
        assert_eq!(columns(&[], 1.0, 0.0, 10), []);
        // An hour: one column per pixel or so.
        let hour: Vec<Window> = (0..3600).map(|k| w(k, 100, 1.0, 5.0)).collect();
        assert!(columns(&hour, 1.0, 3600.0, MAX_COLUMNS).len() <= MAX_COLUMNS);
        assert_eq!(clock(5.25), "5.2 s");
        assert_eq!(clock(245.0), "4:05");
        assert_eq!(clock(3723.0), "1:02:03");
    }

    /// With several processes (`--subprocesses`): a panel per process and loop, on one axis.
    #[test]
    fn a_panel_per_process_and_loop() {
        use crate::capture::recording::ProcessMeta;
        let mut rec = script(100.0, "....aaaaaaaaaaaa....");
        let mut second = rec.loops[0].clone();
        second.native_id = Some(2);
        rec.loops.push(second);
        let more: Vec<_> = rec.samples.iter().map(|s| crate::capture::recording::Sample { loop_index: 1, ..*s }).collect();
        rec.samples.extend(more);
        rec.samples.sort_by(|a, b| a.t.total_cmp(&b.t));
        let process = |pid: i32| ProcessMeta {
            pid,
            parent_pid: Some(10),
            command: vec!["python".into(), format!("<worker {pid}>")],
            python: "3.12.1".into(),
            joined: 100.0,
            left: None,
            end: None,
        };
        rec.processes = vec![process(11), process(12)];
        rec.loop_process = vec![1, 0];
        let a = analyze(&rec, &Options::default());
        let html =
            page(&Page { rec: &rec, analysis: &a, cwd: None, title: "t", subtitle: "s", flames: Vec::new(), initial: View::default() });
        // In process order: PID 11 runs loop 1, PID 12 loop 0.
        let first = html.find("<h2>PID 11 python &lt;worker 11&gt;: thread 2 (L)</h2>").expect("PID 11's panel");
        let second = html.find("<h2>PID 12 python &lt;worker 12&gt;: thread 1 (L)</h2>").expect("PID 12's panel");
        assert!(first < second);
        assert_eq!(html.matches("<g class=\"episode\"").count(), 2);
        assert_eq!(html.matches("<svg class=\"timeline\"").count(), 2);
    }

    #[test]
    fn base64_as_rfc4648() {
        for (input, out) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(input.as_bytes()), out);
        }
    }

    /// The page of a synthetic recording: one span per episode with its hover text, a chart
    /// per figure, the four flame graph views, target strings escaped.
    #[test]
    fn page_of_a_recording() {
        let mut rec = script(100.0, "....aaaaaaaaaaaa....bbbbbbbbbbbbbbbb...ssssssssssss");
        rec.loops[0].thread_name = Some("<img src=x onerror=alert(1)>\"'".into());
        let a = analyze(&rec, &Options::default());
        assert_eq!(a.loops[0].episodes.len(), 3);
        let flames: Vec<(View, Vec<u8>)> = View::ALL.iter().map(|&v| (v, b"<svg height=\"321\"></svg>".to_vec())).collect();
        let p = Page {
            rec: &rec,
            analysis: &a,
            cwd: Some("/srv"),
            title: "loopspy: PID 1 <x>",
            subtitle: "s & t",
            flames,
            initial: View { focus: true, hide_idle: false },
        };
        let html = page(&p);
        assert_eq!(html.matches("<g class=\"episode\"").count(), 3);
        assert!(html.contains("<title>app_a (app.py:10)\n120 ms ± 10 ms, at 0.03 s\non CPU</title>"), "{html}");
        assert!(html.contains("<title>app_b (app.py:20)\nin decode (json/decoder.py:337)\n160 ms ± 10 ms"), "{html}");
        assert!(html.contains("task &quot;Task-7&quot;"), "{html}");
        assert!(html.contains("still running when the recording ended)") && html.contains("waiting in clock_nanosleep"), "{html}");
        for class in ["lag-p99", "lag-max", "ready-mean", "ready-max", "busy"] {
            assert!(html.contains(&format!("class=\"series {class}\"")), "{class}");
        }
        assert!(html.contains("no task counts in this recording"));
        assert!(!html.contains("<img") && html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;"), "{html}");
        assert!(html.contains("<title>loopspy: PID 1 &lt;x&gt;</title>") && html.contains("s &amp; t"));
        assert_eq!(html.matches("<iframe class=\"flame").count(), 4);
        assert_eq!(
            html.matches("<iframe class=\"flame initial\" data-focus=\"1\" data-hide-idle=\"0\" title=\"flame graph\" height=\"327\"")
                .count(),
            1
        );
        assert!(html.contains("id=\"view-focus\" checked") && !html.contains("id=\"hide-idle\" checked"));
        // Self-contained: nothing to fetch.
        // An empty recording has a page too.
        let empty = script(100.0, "");
        let a = analyze(&empty, &Options::default());
        let html = page(&Page { rec: &empty, analysis: &a, flames: Vec::new(), ..p });
        assert!(html.contains("blocking episodes (callbacks ≥ 100 ms): 0") && html.ends_with("</html>\n"));
        for fetch in ["src=\"http", "href=\"http", "url(", "@import", "src=\"//"] {
            assert!(!html.contains(fetch), "{fetch}");
        }
    }
}
