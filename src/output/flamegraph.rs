//! Flame graphs of a recording, in which what blocked the loop stands out.
//!
//! Width is wall time of the loop thread: each sample weighs the time until the next one, in
//! microseconds. Under a root per loop, the first level says what the loop was doing:
//! blocking the loop (samples inside a blocking episode), busy (callbacks under the
//! threshold, loop bookkeeping), idle in select, unknown. Frames keep their category as an
//! annotation inferno understands (`_[k]` blocked, `_[i]` idle, `_[w]` unknown: hidden from
//! the text, used for colour and hover text), so one look says what blocked the loop, and
//! hovering a blocking frame says how much blocked time it accounts for.

use std::collections::HashMap;
use std::io::{self, Write};

use inferno::flamegraph::color::{Color, PaletteMap};
use inferno::flamegraph::{self, FuncFrameAttrsMap, Options};

use crate::analysis::metrics::{is_busy, Analysis};
use crate::asyncio::loopstate::LoopState;
use crate::base::escape::collapsed;
use crate::capture::recording::Recording;
use crate::python::frames::StackFrame;

pub use crate::analysis::metrics::Category;

impl Category {
    pub(crate) fn label(self, threshold_ms: f64) -> String {
        match self {
            Category::Blocked => format!("BLOCKING the loop (callbacks >= {threshold_ms:.0} ms)"),
            Category::Busy => "busy (shorter callbacks, loop bookkeeping)".to_string(),
            Category::Idle => "idle in select".to_string(),
            Category::Unknown => "unknown".to_string(),
            Category::Stopped => "process stopped (SIGSTOP, Ctrl-Z, a debugger)".to_string(),
        }
    }

    fn annotation(self) -> &'static str {
        match self {
            Category::Blocked => "_[k]",
            Category::Busy => "",
            Category::Idle => "_[i]",
            Category::Unknown | Category::Stopped => "_[w]",
        }
    }

    /// A colour for a frame of this category, varied a little by name so neighbours differ.
    pub fn color(self, name: &str) -> Color {
        let h = name.bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
        let v = |range: u32| (h >> 7) % range.max(1);
        let w = |range: u32| (h >> 17) % range.max(1);
        match self {
            Category::Blocked => Color { r: 205 + v(50) as u8, g: 25 + w(50) as u8, b: 25 + w(35) as u8 },
            Category::Busy => Color { r: 225 + v(30) as u8, g: 120 + w(100) as u8, b: 20 + v(40) as u8 },
            Category::Idle => Color { r: 150 + v(25) as u8, g: 170 + w(25) as u8, b: 205 + v(40) as u8 },
            Category::Unknown | Category::Stopped => Color { r: 200, g: 200, b: 200 },
        }
    }

    /// The colour used in the legend (and for the category frames themselves).
    pub fn legend_color(self) -> Color {
        match self {
            Category::Blocked => Color { r: 215, g: 40, b: 40 },
            Category::Busy => Color { r: 240, g: 160, b: 40 },
            Category::Idle => Color { r: 160, g: 180, b: 220 },
            Category::Unknown | Category::Stopped => Color { r: 200, g: 200, b: 200 },
        }
    }
}

/// A shorter file name for frame labels: relative to the standard library or site-packages,
/// or to the target's working directory.
pub fn short_path<'a>(path: &'a str, cwd: Option<&str>) -> &'a str {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(at) = path.rfind(marker) {
            return &path[at + marker.len()..];
        }
    }
    if let Some(at) = path.find("/lib/python3.") {
        let rest = &path[at + "/lib/python3.".len()..];
        if let Some(slash) = rest.find('/') {
            if rest[..slash].chars().all(|c| c.is_ascii_digit()) {
                return &rest[slash + 1..];
            }
        }
    }
    if let Some(cwd) = cwd.filter(|c| c.len() > 1) {
        if let Some(rest) = path.strip_prefix(cwd).and_then(|r| r.strip_prefix('/')) {
            return rest;
        }
    }
    path
}

/// A frame label: `function (file:line)`, escaped for the collapsed format (and so for XML:
/// no control character, no `;`).
pub fn frame_label(f: &StackFrame, cwd: Option<&str>) -> String {
    let (function, file) = (collapsed(&f.function), collapsed(short_path(&f.file, cwd)));
    if f.line > 0 {
        format!("{function} ({file}:{})", f.line)
    } else if file.is_empty() {
        function.into_owned()
    } else {
        format!("{function} ({file})")
    }
}

/// Stacks with their weight (µs), aggregated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    /// `(frames from the root, category) → microseconds`.
    pub stacks: HashMap<(Vec<String>, Option<Category>), u64>,
    /// How many leading frames of each stack are roots (the loop's thread; with several
    /// processes, the process and then the loop's thread), which carry no category.
    pub roots: usize,
}

/// Which stacks a flame graph shows, and from where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct View {
    /// Stacks start at the callback: the loop's own frames below it (`<module>`, `run`,
    /// `run_until_complete`, `run_forever`, `_run_once`, `Handle._run`: as many as each
    /// sample's `loop_frames` says) are folded away.
    pub focus: bool,
    /// Idle time (in select) is left out: widths are the loops' non-idle time.
    pub hide_idle: bool,
}

impl View {
    /// The four views, in the order the HTML page embeds them.
    pub const ALL: [View; 4] = [
        View { focus: false, hide_idle: false },
        View { focus: true, hide_idle: false },
        View { focus: false, hide_idle: true },
        View { focus: true, hide_idle: true },
    ];

    /// Said under the flame graph's title when not the full view.
    pub fn note(self) -> Option<&'static str> {
        match (self.focus, self.hide_idle) {
            (false, false) => None,
            (true, false) => Some("focus (stacks from the callback)"),
            (false, true) => Some("idle hidden"),
            (true, true) => Some("focus, idle hidden"),
        }
    }
}

/// Which category each loop sample falls in (by index into `rec.samples`).
pub fn categorize(rec: &Recording, analysis: &Analysis) -> Vec<Category> {
    rec.samples
        .iter()
        .map(|s| match s.state {
            LoopState::Idle => Category::Idle,
            LoopState::Unknown => Category::Unknown,
            LoopState::Stopped => Category::Stopped,
            state if is_busy(state) => {
                let episodes = &analysis.loops[s.loop_index as usize].episodes;
                if in_episode(episodes, s.t) {
                    Category::Blocked
                } else {
                    Category::Busy
                }
            }
            _ => Category::Unknown,
        })
        .collect()
}

/// Is `t` within one of the episodes? They come in time order and do not overlap (each is a
/// run of busy samples between idle ones), so a binary search finds the only candidate.
fn in_episode(episodes: &[crate::analysis::metrics::Episode], t: f64) -> bool {
    if episodes.windows(2).all(|p| p[0].end <= p[1].start) {
        let i = episodes.partition_point(|e| e.end < t);
        episodes.get(i).is_some_and(|e| t >= e.start && t <= e.end)
    } else {
        episodes.iter().any(|e| t >= e.start && t <= e.end)
    }
}

/// Weighted stacks before labelling: (root, stack id, category) → µs, where root is a loop
/// index, or `u32::MAX - thread id` for a thread without a loop (category `None`).
pub type StackWeights = HashMap<(u32, u32, Option<Category>), u64>;

/// Fold a recording into weighted stacks: root (thread and loop), category, frames.
///
/// Samples are summed per interned stack first, then each distinct stack is labelled once:
/// the cost is one addition per sample plus one label per distinct frame.
pub fn fold(rec: &Recording, analysis: &Analysis, cwd: Option<&str>, all_threads: bool) -> Folded {
    fold_view(rec, analysis, cwd, all_threads, View::default())
}

/// [`fold`] in a [`View`].
pub fn fold_view(rec: &Recording, analysis: &Analysis, cwd: Option<&str>, all_threads: bool, view: View) -> Folded {
    let categories = categorize(rec, analysis);
    let interval = rec.interval();
    let weight_us = |t: f64, next: Option<f64>| -> u64 {
        let weight = next.map(|n| (n - t).clamp(0.0, 2.0 * interval)).unwrap_or(interval);
        crate::analysis::stream::weight_us(weight)
    };
    let mut by_stack: StackWeights = HashMap::new();
    let mut next_of_loop: Vec<Option<f64>> = vec![None; rec.loops.len()];
    for (i, s) in rec.samples.iter().enumerate().rev() {
        let Some(next) = next_of_loop.get_mut(s.loop_index as usize) else { continue };
        *by_stack.entry((s.loop_index as u32, s.stack, Some(categories[i]))).or_insert(0) += weight_us(s.t, *next);
        *next = Some(s.t);
    }
    if all_threads {
        let mut next_of_thread: HashMap<u32, f64> = HashMap::new();
        for s in rec.other_threads.iter().rev() {
            let next = next_of_thread.insert(s.thread, s.t);
            *by_stack.entry((u32::MAX - s.thread, s.stack, None)).or_insert(0) += weight_us(s.t, next);
        }
    }
    let mut loop_frames: HashMap<u32, u16> = HashMap::new();
    if view.focus {
        for s in &rec.samples {
            let n = loop_frames.entry(s.stack).or_insert(0);
            *n = (*n).max(s.loop_frames);
        }
    }
    label(rec, &by_stack, analysis.threshold_ms, cwd, view, &loop_frames)
}

/// The same fold from a stream that folded the samples as they came
/// ([`StreamOptions::fold`](crate::analysis::stream::StreamOptions::fold)), for a recording
/// that did not keep them.
pub fn fold_stream(
    rec: &Recording,
    stream: &crate::analysis::stream::Stream,
    threads: Option<&crate::analysis::stream::ThreadsFold>,
    threshold_ms: f64,
    cwd: Option<&str>,
) -> Folded {
    fold_stream_view(rec, stream, threads, threshold_ms, cwd, View::default())
}

/// [`fold_stream`] in a [`View`].
pub fn fold_stream_view(
    rec: &Recording,
    stream: &crate::analysis::stream::Stream,
    threads: Option<&crate::analysis::stream::ThreadsFold>,
    threshold_ms: f64,
    cwd: Option<&str>,
    view: View,
) -> Folded {
    let mut by_stack: StackWeights = HashMap::new();
    let mut loop_frames: HashMap<u32, u16> = HashMap::new();
    for i in 0..rec.loops.len() {
        let Some(l) = stream.loop_stream(i) else { continue };
        for ((stack, cat), us) in l.folded(rec, &stream.opts) {
            *by_stack.entry((i as u32, stack, Some(cat))).or_insert(0) += us;
        }
        if view.focus {
            for (&stack, &n) in l.folded_loop_frames() {
                let m = loop_frames.entry(stack).or_insert(0);
                *m = (*m).max(n);
            }
        }
    }
    if let Some(t) = threads {
        for ((thread, stack), us) in t.folded() {
            *by_stack.entry((u32::MAX - thread, stack, None)).or_insert(0) += us;
        }
    }
    label(rec, &by_stack, threshold_ms, cwd, view, &loop_frames)
}

/// Label weighted stacks: the roots (with several processes, the process; then the thread and
/// loop), the category, the frames from the root. In a focus view a loop's stack leaves out
/// its outermost `loop_frames[stack]` frames (the loop's own: the most any sample with that
/// stack said, so that folding from the samples and from a stream agree); hiding idle leaves
/// out idle stacks.
fn label(
    rec: &Recording,
    by_stack: &StackWeights,
    threshold_ms: f64,
    cwd: Option<&str>,
    view: View,
    loop_frames: &HashMap<u32, u16>,
) -> Folded {
    // With several processes, each loop and thread sits under its process.
    let process_roots: Vec<String> = rec.processes.iter().map(|p| process_label(p, rec.started)).collect();
    let under = |process: Option<u16>, root: String| -> Vec<String> {
        if !rec.is_fleet() {
            return vec![root];
        }
        let p = process.and_then(|p| process_roots.get(p as usize)).cloned().unwrap_or_else(|| "process unknown".to_string());
        vec![p, root]
    };
    let mut thread_roots: HashMap<u32, Vec<String>> = HashMap::new();
    let loop_roots: Vec<Vec<String>> = rec
        .loops
        .iter()
        .enumerate()
        .map(|(i, meta)| {
            let root = format!(
                "{} ({})",
                collapsed(&meta.thread_name.clone().unwrap_or_else(|| format!("thread {}", meta.native_id.unwrap_or(0)))),
                collapsed(&meta.loop_class)
            );
            under(rec.process_of_loop(i as u16), root)
        })
        .collect();
    let mut labels: HashMap<u32, String> = HashMap::new();
    let mut folded = Folded { stacks: HashMap::new(), roots: if rec.is_fleet() { 2 } else { 1 } };
    for (&(root, stack, cat), &us) in by_stack {
        if view.hide_idle && cat == Some(Category::Idle) {
            continue;
        }
        let mut frames = Vec::new();
        match cat {
            Some(cat) => {
                let Some(r) = loop_roots.get(root as usize) else { continue };
                frames.extend(r.iter().cloned());
                frames.push(cat.label(threshold_ms));
            }
            None => {
                let thread = u32::MAX - root;
                let r = thread_roots.entry(thread).or_insert_with(|| {
                    under(rec.process_of_thread(thread), format!("{} (no event loop)", collapsed(rec.threads.get(thread))))
                });
                frames.extend(r.iter().cloned());
            }
        }
        let skip = match cat {
            Some(_) if view.focus => loop_frames.get(&stack).copied().unwrap_or(0) as usize,
            _ => 0,
        };
        for &frame in rec.stacks.get(stack).iter().rev().skip(skip) {
            frames.push(labels.entry(frame).or_insert_with(|| frame_label(rec.frames.get(frame), cwd)).clone());
        }
        *folded.stacks.entry((frames, cat)).or_insert(0) += us;
    }
    folded
}

/// A process's root frame: `PID 4242 python3 app.py` (cut at 100 characters), and when it
/// left the recording.
pub fn process_label(p: &crate::capture::recording::ProcessMeta, started: f64) -> String {
    let mut command = p.command.join(" ");
    if command.chars().count() > 100 {
        command = command.chars().take(97).collect::<String>() + "...";
    }
    let left = match (p.end, p.left) {
        (Some(crate::capture::recording::ProcessEnd::Exec), Some(t)) => format!(" (exec at {:.1} s)", t - started),
        (Some(_), Some(t)) => format!(" (exited at {:.1} s)", t - started),
        _ => String::new(),
    };
    collapsed(&format!("PID {} {command}{left}", p.pid)).into_owned()
}

impl Folded {
    /// Collapsed lines (`frame;frame;frame weight`), sorted; plain names, as flamegraph.pl
    /// and speedscope read them. Weights are microseconds.
    pub fn collapsed(&self) -> Vec<String> {
        let mut lines: Vec<String> =
            self.stacks.iter().filter(|(_, w)| **w > 0).map(|((frames, _), w)| format!("{} {w}", frames.join(";"))).collect();
        lines.sort();
        lines
    }

    /// Collapsed lines with category annotations on every frame below the root.
    fn annotated(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|((frames, cat), w)| {
                let ann = cat.map(|c| c.annotation()).unwrap_or("");
                let plain = self.roots.max(1);
                let names: Vec<String> =
                    frames.iter().enumerate().map(|(i, f)| if i < plain { f.clone() } else { format!("{f}{ann}") }).collect();
                format!("{} {w}", names.join(";"))
            })
            .collect();
        lines.sort();
        lines
    }

    /// Time (µs) each annotated frame name accounts for, counted once per stack.
    fn time_per_name(&self) -> HashMap<String, (u64, Option<Category>)> {
        let mut out: HashMap<String, (u64, Option<Category>)> = HashMap::new();
        for ((frames, cat), w) in &self.stacks {
            let ann = cat.map(|c| c.annotation()).unwrap_or("");
            let plain = self.roots.max(1);
            let mut seen = std::collections::HashSet::new();
            for (i, f) in frames.iter().enumerate() {
                let name = if i < plain { f.clone() } else { format!("{f}{ann}") };
                if seen.insert(name.clone()) {
                    let e = out.entry(name).or_insert((0, if i < plain { None } else { *cat }));
                    e.0 += w;
                }
            }
        }
        out
    }
}

/// Text for the flame graph's header.
pub struct Header {
    pub title: String,
    pub subtitle: String,
}

fn seconds(us: u64) -> String {
    let s = us as f64 / 1e6;
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

/// Render an SVG flame graph, with a legend.
pub fn svg<W: Write>(folded: &Folded, header: &Header, threshold_ms: f64, out: W) -> io::Result<()> {
    let total: u64 = folded.stacks.iter().filter(|((f, _), _)| !f.is_empty()).map(|(_, w)| w).sum();
    let per_name = folded.time_per_name();
    let mut palette = PaletteMap::default();
    let mut attrs = String::new();
    for (name, (us, cat)) in &per_name {
        let pct = if total > 0 { 100.0 * *us as f64 / total as f64 } else { 0.0 };
        let plain = strip_annotation(name);
        let category_frame = [Category::Blocked, Category::Busy, Category::Idle, Category::Unknown, Category::Stopped]
            .iter()
            .find(|c| plain == c.label(threshold_ms));
        let color = match (category_frame, cat) {
            (Some(c), _) => c.legend_color(),
            (None, Some(c)) => c.color(plain),
            (None, None) => Color { r: 190, g: 190, b: 170 },
        };
        palette.insert(name, color);
        let title = match cat {
            Some(Category::Blocked) => format!("{plain}: blocked the loop for {} ({pct:.1}% of the recording)", seconds(*us)),
            Some(Category::Idle) => format!("{plain}: idle {} ({pct:.1}%)", seconds(*us)),
            _ => format!("{plain}: {} ({pct:.1}%)", seconds(*us)),
        };
        let class = match cat {
            Some(Category::Blocked) => "loopspy-blocked",
            Some(Category::Busy) => "loopspy-busy",
            Some(Category::Idle) => "loopspy-idle",
            Some(Category::Unknown) | Some(Category::Stopped) => "loopspy-unknown",
            None => "loopspy-root",
        };
        attrs.push_str(&format!("{name}\ttitle={}\tclass={class}\n", title.replace(['\t', '\n'], " ")));
    }
    let mut options = Options::default();
    options.title = crate::base::escape::xml(&header.title).into_owned();
    options.subtitle = Some(crate::base::escape::xml(&header.subtitle).into_owned());
    options.count_name = "µs".to_string();
    options.name_type = "".to_string();
    options.hash = true;
    // A label cut short keeps its start (the function's name), not its end.
    options.text_truncate_direction = inferno::flamegraph::TextTruncateDirection::Right;
    options.deterministic = true;
    options.palette_map = Some(&mut palette);
    options.func_frameattrs = FuncFrameAttrsMap::from_reader(attrs.as_bytes())?;
    let lines = folded.annotated();
    let mut buf = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut buf)?;
    let svg = String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let svg = add_legend(&svg, threshold_ms);
    let mut out = out;
    out.write_all(svg.as_bytes())?;
    out.flush()
}

fn strip_annotation(name: &str) -> &str {
    for a in ["_[k]", "_[i]", "_[w]"] {
        if let Some(stripped) = name.strip_suffix(a) {
            return stripped;
        }
    }
    name
}

/// The number in `name="123"` of the first tag that has it.
fn svg_attr(svg: &str, name: &str) -> Option<f64> {
    let at = svg.find(&format!(" {name}=\""))? + name.len() + 3;
    svg[at..].split('"').next()?.parse().ok()
}

/// A legend of the three colours, in the bottom-right corner (the bottom-left shows details
/// of the frame under the mouse).
fn add_legend(svg: &str, threshold_ms: f64) -> String {
    let items = [
        (Category::Blocked, format!("blocking the loop (callback >= {threshold_ms:.0} ms)")),
        (Category::Busy, "busy (shorter callbacks)".to_string()),
        (Category::Idle, "idle in select".to_string()),
    ];
    let char_width = 7.0;
    let widths: Vec<f64> = items.iter().map(|(_, t)| 15.0 + char_width * t.len() as f64 + 16.0).collect();
    let total: f64 = widths.iter().sum();
    let width = svg_attr(svg, "width").unwrap_or(1200.0);
    let height = svg_attr(svg, "height").unwrap_or(0.0);
    let y = (height - 21.0).max(0.0);
    let mut x = (width - total - 10.0).max(10.0);
    let mut legend = String::from("<g id=\"loopspy-legend\" font-family=\"Verdana\" font-size=\"11\">");
    for ((cat, text), w) in items.iter().zip(widths) {
        let c = cat.legend_color();
        legend.push_str(&format!(
            "<rect class=\"legend-{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"11\" height=\"11\" fill=\"rgb({},{},{})\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            format!("{cat:?}").to_lowercase(),
            c.r,
            c.g,
            c.b,
            x + 15.0,
            y + 10.0,
            text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"),
        ));
        x += w;
    }
    legend.push_str("</g>");
    match svg.rfind("</svg>") {
        Some(at) => format!("{}{legend}{}", &svg[..at], &svg[at..]),
        None => svg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths() {
        assert_eq!(short_path("/usr/lib/python3.12/asyncio/events.py", None), "asyncio/events.py");
        assert_eq!(short_path("/v/lib/python3.12/site-packages/aiohttp/web.py", None), "aiohttp/web.py");
        assert_eq!(short_path("/srv/app/db.py", Some("/srv/app")), "db.py");
        assert_eq!(short_path("/srv/app/db.py", Some("/")), "/srv/app/db.py");
        assert_eq!(short_path("<frozen runpy>", None), "<frozen runpy>");
    }

    #[test]
    fn labels_drop_collapsed_separators() {
        let f = StackFrame { function: "a;b\n\x1b[2J".into(), file: "/srv/x.py".into(), line: 3 };
        assert_eq!(frame_label(&f, None), "a\\x3bb\\n\\x1b[2J (/srv/x.py:3)");
    }

    #[test]
    fn focus_folds_the_loops_frames_away_and_idle_can_be_hidden() {
        use crate::analysis::metrics::{analyze, tests::script, Options};
        // 100 Hz: idle, a 120 ms blocking run of `app_a`, idle, a 50 ms busy run of `app_b`.
        let rec = script(100.0, "....aaaaaaaaaaaa....bbbbb...");
        let a = analyze(&rec, &Options::default());
        let lines = |view: View| {
            let mut l = fold_view(&rec, &a, None, false, view).collapsed();
            l.iter_mut().for_each(|x| *x = x.replace(" (asyncio/", " ("));
            l
        };
        let blocked = "thread 1 (L);BLOCKING the loop (callbacks >= 100 ms)";
        let busy = "thread 1 (L);busy (shorter callbacks, loop bookkeeping)";
        let idle = "thread 1 (L);idle in select";
        let run = "BaseEventLoop._run_once (base_events.py:1971);Handle._run (events.py:84)";
        let full = lines(View::default());
        assert_eq!(fold(&rec, &a, None, false).collapsed().len(), full.len());
        let has = |ls: &[String], prefix: &str| ls.iter().any(|l| l.starts_with(prefix));
        assert!(has(&full, &format!("{blocked};{run};app_a (/srv/app.py:10) ")), "{full:#?}");
        assert!(has(&full, &format!("{busy};{run};app_b (/srv/app.py:20);decode (json/decoder.py:337) ")), "{full:#?}");
        // Focus: the callback's frames only, under the category; idle keeps what is above the
        // loop's own frames (the selector), and no stack keeps a loop frame.
        let focus = lines(View { focus: true, hide_idle: false });
        assert!(has(&focus, &format!("{blocked};app_a (/srv/app.py:10) ")), "{focus:#?}");
        assert!(has(&focus, &format!("{busy};app_b (/srv/app.py:20);decode (json/decoder.py:337) ")), "{focus:#?}");
        assert!(has(&focus, &format!("{idle} ")), "{focus:#?}");
        assert!(!focus.iter().any(|l| l.contains("_run_once") || l.contains("Handle._run")), "{focus:#?}");
        // The same time in every view but the one without idle, which drops exactly the idle.
        let total = |v: View| fold_view(&rec, &a, None, false, v).stacks.values().sum::<u64>();
        let idle_us: u64 = fold_view(&rec, &a, None, false, View::default())
            .stacks
            .iter()
            .filter(|((_, c), _)| *c == Some(Category::Idle))
            .map(|(_, w)| w)
            .sum();
        assert_eq!(idle_us, 11 * 10_000);
        assert_eq!(total(View::default()), total(View { focus: true, hide_idle: false }));
        for v in [View { focus: false, hide_idle: true }, View { focus: true, hide_idle: true }] {
            assert_eq!(total(v) + idle_us, total(View::default()), "{v:?}");
            assert!(!lines(v).iter().any(|l| l.starts_with(idle)), "{v:?}");
        }
        // The blocking frames stay red in the focused SVG.
        let mut svg_out = Vec::new();
        let header = Header { title: "t".into(), subtitle: "s".into() };
        svg(&fold_view(&rec, &a, None, false, View { focus: true, hide_idle: true }), &header, 100.0, &mut svg_out).unwrap();
        let text = String::from_utf8(svg_out).unwrap();
        assert!(text.contains("class=\"loopspy-blocked\"><title>app_a (/srv/app.py:10): blocked the loop for 120 ms"), "{text}");
    }

    #[test]
    fn colours_per_category() {
        for name in ["fetch_user (db.py:42)", "x", "long name with spaces (file.py:1)"] {
            let b = Category::Blocked.color(name);
            assert!(b.r >= 200 && b.g <= 80 && b.b <= 80, "{b:?}");
            let i = Category::Idle.color(name);
            assert!(i.b > i.r && i.b >= 200, "{i:?}");
            let w = Category::Busy.color(name);
            assert!(w.r >= 220 && w.b <= 60, "{w:?}");
        }
    }
}
