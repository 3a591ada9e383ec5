//! The figures of [`super::metrics`], computed as samples arrive: one pass, constant work per
//! sample, and memory that does not grow with every sample (per-window accumulators, a lag
//! histogram, per-run counts instead of the run's samples). [`super::metrics::analyze`] is
//! this stream fed a whole recording, so a live view (`top`) and a report (`record`) can never
//! disagree.
//!
//! Per loop the stream keeps: the sample whose weight is not known yet (its weight runs to the
//! next sample), running sums for the shares, ready depth and its trend, a histogram of lag,
//! one accumulator per window, the busy run in progress (counts of its stacks, tasks and
//! kernel activity: what blaming it needs), and the episodes found.

use std::collections::{BTreeMap, HashMap};

use super::metrics::{
    blame_counts, is_busy, mode_weighted, Category, CurrentRun, Episode, FrameInfo, FrameTotals, GcShare, LagStats, LoopSummary,
    ReadyStats, TaskPoint, TaskStats, Window, MIN_EPISODE_SAMPLES,
};
use crate::asyncio::loopstate::LoopState;
use crate::capture::recording::{Recording, Sample, ThreadActivity};

/// Relative width of a lag histogram bucket: a percentile read from the histogram is the
/// largest lag in its bucket, at most this much (relatively) above the exact percentile.
pub const LAG_BUCKET_RATIO: f64 = 1.005;
/// Lags under this many milliseconds share the first bucket.
const LAG_FLOOR_MS: f64 = 0.001;

/// Lag percentiles without keeping every value: a log-bucketed histogram (bucket `k` holds
/// lags in `[floor·r^k, floor·r^(k+1))`), each bucket with its count and its largest value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LagHistogram {
    buckets: BTreeMap<i32, (u64, f64)>,
    count: u64,
    max: f64,
}

impl LagHistogram {
    pub fn add(&mut self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        let k = if ms < LAG_FLOOR_MS { -1 } else { ((ms / LAG_FLOOR_MS).ln() / LAG_BUCKET_RATIO.ln()).floor() as i32 };
        let b = self.buckets.entry(k).or_insert((0, 0.0));
        b.0 += 1;
        b.1 = b.1.max(ms);
        self.count += 1;
        self.max = self.max.max(ms);
    }

    /// The value at rank `round((n − 1)·p)` of the sorted lags (as an exact percentile would
    /// pick), read as the largest lag of the bucket holding that rank.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((self.count - 1) as f64 * p).round() as u64;
        let mut seen = 0;
        for (count, max) in self.buckets.values() {
            seen += count;
            if seen > rank {
                return *max;
            }
        }
        self.max
    }

    pub fn stats(&self) -> LagStats {
        LagStats { p50_ms: self.percentile(0.5), p99_ms: self.percentile(0.99), max_ms: self.max, unknown_samples: 0 }
    }

    /// Counts at or under each bound (ms), and the total: a cumulative histogram.
    pub fn cumulative(&self, bounds_ms: &[f64]) -> (Vec<u64>, u64) {
        let mut out = vec![0u64; bounds_ms.len()];
        for (count, max) in self.buckets.values() {
            for (i, b) in bounds_ms.iter().enumerate() {
                if *max <= *b {
                    out[i] += count;
                }
            }
        }
        (out, self.count)
    }
}

/// Least-squares slope of y over x, from running sums (x relative to a fixed origin).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Slope {
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl Slope {
    fn add(&mut self, x: f64, y: f64) {
        self.n += 1.0;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.sxy += x * y;
    }

    fn slope(&self) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        let sxx = self.sxx - self.sx * self.sx / self.n;
        if sxx <= 1e-12 * self.sxx.abs().max(1.0) {
            return 0.0;
        }
        (self.sxy - self.sx * self.sy / self.n) / sxx
    }
}

/// One window being filled.
#[derive(Debug, Clone, Default, PartialEq)]
struct WindowAcc {
    samples: u32,
    weight: f64,
    busy: f64,
    /// The lags of the window while it fills; once a later window has a sample it is
    /// [`closed`](WindowAcc::close): the list gives way to its p99 and maximum (memory stays
    /// one small entry per window, not one number per sample).
    lags: Vec<f64>,
    closed_lag: Option<(f64, f64)>,
    ready_sum: f64,
    ready_max: u32,
    /// Episodes that started in it and are no longer listed ([`StreamOptions::max_listed`]).
    omitted_episodes: u32,
}

impl WindowAcc {
    fn close(&mut self) {
        if self.closed_lag.is_none() {
            self.closed_lag = Some(self.lag_p99_max());
            self.lags = Vec::new();
        }
    }

    /// (p99, max) of the window's lags, 0 without any.
    fn lag_p99_max(&self) -> (f64, f64) {
        if let Some(c) = self.closed_lag {
            return c;
        }
        let mut lags = self.lags.clone();
        lags.sort_by(f64::total_cmp);
        (percentile(&lags, 0.99), lags.last().copied().unwrap_or(0.0))
    }

    fn window(&self, k: usize, rec: &Recording, opts: &StreamOptions, episodes: &[Episode]) -> Window {
        let lo = opts.origin + k as f64 * opts.window;
        let hi = lo + opts.window;
        let (lag_p99_ms, lag_max_ms) = self.lag_p99_max();
        Window {
            start_s: lo - rec.started,
            samples: self.samples,
            busy_pct: if self.weight > 0.0 { 100.0 * self.busy / self.weight } else { 0.0 },
            lag_p99_ms,
            lag_max_ms,
            ready_mean: if self.samples > 0 { self.ready_sum / self.samples as f64 } else { 0.0 },
            ready_max: self.ready_max,
            episodes: episodes.iter().filter(|e| e.start >= lo && e.start < hi).count() as u32 + self.omitted_episodes,
        }
    }
}

/// Counts in first-seen order (ties of a mode go to the first seen).
#[derive(Debug, Clone, PartialEq)]
pub struct Tally<K: Eq + std::hash::Hash + Clone> {
    order: Vec<(K, u32)>,
    index: HashMap<K, usize>,
}

impl<K: Eq + std::hash::Hash + Clone> Default for Tally<K> {
    fn default() -> Self {
        Tally { order: Vec::new(), index: HashMap::new() }
    }
}

impl<K: Eq + std::hash::Hash + Clone> Tally<K> {
    pub fn add(&mut self, k: K) {
        match self.index.get(&k) {
            Some(i) => self.order[*i].1 += 1,
            None => {
                self.index.insert(k.clone(), self.order.len());
                self.order.push((k, 1));
            }
        }
    }

    /// `(item, count)` in first-seen order.
    pub fn items(&self) -> &[(K, u32)] {
        &self.order
    }

    pub fn mode(&self) -> Option<K> {
        mode_weighted(self.order.iter().map(|(k, c)| (k.clone(), *c as usize)))
    }

    /// Add `other`'s counts (its new items after these).
    pub fn merge(&mut self, other: &Tally<K>) {
        for (k, c) in &other.order {
            match self.index.get(k) {
                Some(i) => self.order[*i].1 += c,
                None => {
                    self.index.insert(k.clone(), self.order.len());
                    self.order.push((k.clone(), *c));
                }
            }
        }
    }
}

/// A busy run in progress: consecutive busy samples of one callback.
#[derive(Debug, Clone, PartialEq)]
struct RunAcc {
    callback: Option<u64>,
    first_t: f64,
    last_t: f64,
    /// The sample just before the run's first (any state), if any.
    before_t: Option<f64>,
    /// The first sample after the run's last (an unknown one, while the run may go on).
    after_t: Option<f64>,
    busy: usize,
    stacks: Tally<(u32, u16)>,
    tasks: Tally<u32>,
    on_cpu: usize,
    waits: Tally<ThreadActivity>,
    /// With folding on: µs per stack of the run's busy samples settled so far (blocking or
    /// busy is known once the run ends).
    weights: HashMap<u32, u64>,
    /// The GC state of its busy samples.
    gc: GcShare,
}

/// Episodes a stream dropped (`max_episodes`) that are at least `threshold` long, summed.
#[derive(Debug, Clone, PartialEq)]
struct DroppedAt {
    threshold: f64,
    count: u64,
    frames: FrameTotals,
}

/// The live state of one loop.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopStream {
    loop_index: u16,
    /// The last sample: its weight is known when the next one comes.
    pending: Option<Sample>,
    samples: u32,
    wall: f64,
    busy_w: f64,
    idle_w: f64,
    unknown_w: f64,
    stopped_w: f64,
    lag: LagHistogram,
    /// Samples whose lag is unknown (timers unreadable).
    lag_unknown: u32,
    ready_sum: f64,
    ready_max: u32,
    ready_last: u32,
    ready_trend: Slope,
    /// Window `k` covers `[origin + k·width, origin + (k+1)·width)`.
    windows: Vec<WindowAcc>,
    /// The window `windows[0]` is ([`StreamOptions::max_windows`] drops the oldest).
    windows_base: usize,
    run: Option<RunAcc>,
    /// Time of the previous sample (any state).
    prev_t: Option<f64>,
    busy_since: Option<f64>,
    longest_busy: f64,
    last_busy_for: Option<f32>,
    episodes: Vec<Episode>,
    /// Episodes dropped to keep at most `max_episodes`.
    episodes_dropped: u64,
    /// Those dropped episodes summed by frame, at each threshold a view may ask for
    /// ([`Stream::keeping_dropped_at`]): its counts and frames table stay whole.
    dropped: Vec<DroppedAt>,
    /// Episodes that ended (at least `keep_threshold` long), listed or not.
    ended: u64,
    /// The last [`RECENT_EPISODES`] that ended, for readers that follow them as they end.
    recent: std::collections::VecDeque<Episode>,
    /// Episodes no longer listed ([`StreamOptions::max_listed`]), summed by frame.
    omitted: FrameTotals,
    omitted_count: u64,
    /// The last sample whose state was known.
    last_known: Option<Sample>,
    /// With folding on ([`StreamOptions::fold`]): µs per (stack, category) of the samples
    /// settled, as a flame graph weighs them.
    fold: HashMap<(u32, Category), u64>,
    /// With folding on: how many of each folded stack's outermost frames are the loop's own
    /// (the most any sample with that stack said: the same whatever the order), for a flame
    /// graph's focus view.
    fold_loop_frames: HashMap<u32, u16>,
}

/// How a stream is set up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamOptions {
    /// Runs at least this long (seconds) are kept as episodes; a view may show a higher
    /// threshold by filtering (the dashboard's `+`/`-`).
    pub keep_threshold: f64,
    /// Window width (seconds); 0: no per-window series.
    pub window: f64,
    /// Where window 0 starts.
    pub origin: f64,
    pub interval: f64,
    pub started: f64,
    /// Task counts before this are left out (samples before it are not pushed).
    pub since: f64,
    /// Episodes kept per loop, the oldest dropped first (a live view that runs for days);
    /// `None`: all.
    pub max_episodes: Option<usize>,
    /// Fold samples into weighted stacks as they come ([`LoopStream::folded`]): a recording
    /// need not keep its samples for its flame graph.
    pub fold: bool,
    /// Windows kept per loop, the oldest dropped first (a live view shows the last minute;
    /// its redraw then costs the same however long it has run); `None`: all.
    pub max_windows: Option<usize>,
    /// Episodes listed per loop, the shortest let go of first (a recording of hours: its
    /// report lists the longest); those let go of still count in the per-window episode
    /// counts and the blocking frames. `None`: all.
    pub max_listed: Option<usize>,
}

/// Episodes a recording's report lists per loop at most (the longest): more than an
/// incident needs, and a few MB at most.
pub const MAX_LISTED_EPISODES: usize = 5_000;

/// Episodes kept as they end, for readers that follow them (JSON lines, `serve`) and take
/// them at least as often as samples come (at most one ends per loop and sample).
pub const RECENT_EPISODES: usize = 64;

impl StreamOptions {
    /// For a whole recording: episodes at least `threshold` long, windows of `window`
    /// seconds from the start.
    pub fn for_recording(rec: &Recording, threshold: f64, window: f64) -> Self {
        StreamOptions {
            keep_threshold: threshold,
            window,
            origin: rec.started,
            interval: rec.interval(),
            started: rec.started,
            since: f64::MIN,
            max_episodes: None,
            fold: false,
            max_windows: None,
            max_listed: Some(MAX_LISTED_EPISODES),
        }
    }
}

impl LoopStream {
    pub fn new(loop_index: u16) -> Self {
        LoopStream {
            loop_index,
            pending: None,
            samples: 0,
            wall: 0.0,
            busy_w: 0.0,
            idle_w: 0.0,
            unknown_w: 0.0,
            stopped_w: 0.0,
            lag: LagHistogram::default(),
            lag_unknown: 0,
            ready_sum: 0.0,
            ready_max: 0,
            ready_last: 0,
            ready_trend: Slope::default(),
            windows: Vec::new(),
            windows_base: 0,
            run: None,
            prev_t: None,
            busy_since: None,
            longest_busy: 0.0,
            last_busy_for: None,
            episodes: Vec::new(),
            episodes_dropped: 0,
            dropped: Vec::new(),
            ended: 0,
            recent: std::collections::VecDeque::new(),
            omitted: FrameTotals::default(),
            omitted_count: 0,
            last_known: None,
            fold: HashMap::new(),
            fold_loop_frames: HashMap::new(),
        }
    }

    /// Take one sample of this loop (in time order).
    pub fn push(&mut self, rec: &Recording, opts: &StreamOptions, s: &Sample) {
        if opts.fold {
            let n = self.fold_loop_frames.entry(s.stack).or_insert(0);
            *n = (*n).max(s.loop_frames);
        }
        // The previous sample's weight runs to this one.
        if let Some(p) = self.pending.take() {
            let w = (s.t - p.t).clamp(0.0, 2.0 * opts.interval);
            self.settle(&p, w, opts);
        }
        self.samples += 1;
        match lag_ms(s) {
            Some(ms) => self.lag.add(ms),
            None => self.lag_unknown += 1,
        }
        self.ready_sum += s.ready as f64;
        self.ready_max = self.ready_max.max(s.ready);
        self.ready_last = s.ready;
        self.ready_trend.add(s.t - opts.started, s.ready as f64);
        self.track_run(rec, opts, s);
        // Busy stretches across callbacks (unknown samples end them).
        if is_busy(s.state) {
            let start = *self.busy_since.get_or_insert(self.prev_t.map_or(s.t, |p| (p + s.t) / 2.0));
            self.longest_busy = self.longest_busy.max(s.t - start);
            self.last_busy_for = s.busy_for;
        } else {
            self.busy_since = None;
        }
        self.prev_t = Some(s.t);
        self.pending = Some(*s);
        if s.state != LoopState::Unknown {
            self.last_known = Some(*s);
        }
    }

    /// Account a sample whose weight is now known.
    fn settle(&mut self, s: &Sample, w: f64, opts: &StreamOptions) {
        if opts.fold {
            let us = weight_us(w);
            match category_of(s.state) {
                // A busy sample belongs to the run in progress (the run it started or joined
                // stays open until a later sample): blocking or busy once the run ends.
                None => match &mut self.run {
                    Some(run) => *run.weights.entry(s.stack).or_insert(0) += us,
                    None => *self.fold.entry((s.stack, Category::Busy)).or_insert(0) += us,
                },
                Some(cat) => *self.fold.entry((s.stack, cat)).or_insert(0) += us,
            }
        }
        self.wall += w;
        match s.state {
            state if is_busy(state) => self.busy_w += w,
            LoopState::Idle => self.idle_w += w,
            LoopState::Unknown => self.unknown_w += w,
            LoopState::Stopped => self.stopped_w += w,
            _ => {}
        }
        if opts.window > 0.0 {
            let k = ((s.t - opts.origin) / opts.window).floor();
            if self.windows.is_empty() && self.windows_base == 0 && (0.0..1e9).contains(&k) {
                // A loop's windows start at its first second (a loop that appears an hour in
                // does not hold an hour of empty windows).
                self.windows_base = k as usize;
            }
            if (0.0..1e9).contains(&k) && k as usize >= self.windows_base {
                let k = k as usize - self.windows_base;
                if self.windows.len() <= k {
                    if let Some(last) = self.windows.last_mut() {
                        last.close();
                    }
                    self.windows.resize(k + 1, WindowAcc::default());
                }
                let k = match opts.max_windows {
                    Some(max) if self.windows.len() > max.max(1) => {
                        let excess = self.windows.len() - max.max(1);
                        self.windows.drain(..excess);
                        self.windows_base += excess;
                        k - excess
                    }
                    _ => k,
                };
                let acc = &mut self.windows[k];
                acc.samples += 1;
                acc.weight += w;
                if is_busy(s.state) {
                    acc.busy += w;
                }
                acc.lags.extend(lag_ms(s));
                acc.ready_sum += s.ready as f64;
                acc.ready_max = acc.ready_max.max(s.ready);
            }
        }
    }

    fn track_run(&mut self, rec: &Recording, opts: &StreamOptions, s: &Sample) {
        if s.state == LoopState::Unknown {
            // Does not split a run; the first one after the run's last sample bounds its end.
            if let Some(run) = &mut self.run {
                run.after_t.get_or_insert(s.t);
            }
            return;
        }
        let busy = is_busy(s.state);
        if let Some(run) = &mut self.run {
            if busy && run.callback == s.callback {
                run.last_t = s.t;
                run.after_t = None;
                add_to_run(run, s);
                return;
            }
            let run = self.run.take().expect("checked");
            let next = run.after_t.unwrap_or(s.t);
            self.close_run(rec, opts, run, Some(next));
        }
        if busy {
            let mut run = RunAcc {
                callback: s.callback,
                first_t: s.t,
                last_t: s.t,
                before_t: self.prev_t,
                after_t: None,
                busy: 0,
                stacks: Tally::default(),
                tasks: Tally::default(),
                on_cpu: 0,
                waits: Tally::default(),
                weights: HashMap::new(),
                gc: GcShare::default(),
            };
            add_to_run(&mut run, s);
            self.run = Some(run);
        }
    }

    /// A run ended (`next`: the sample after it; `None`: the recording ended in it).
    fn close_run(&mut self, rec: &Recording, opts: &StreamOptions, mut run: RunAcc, next: Option<f64>) {
        let episode = run_episode(rec, opts, &run, next, self.loop_index).filter(|e| e.end - e.start >= opts.keep_threshold);
        let cat = if episode.is_some() { Category::Blocked } else { Category::Busy };
        for (stack, us) in run.weights.drain() {
            *self.fold.entry((stack, cat)).or_insert(0) += us;
        }
        if let Some(e) = episode {
            self.ended += 1;
            if self.recent.len() == RECENT_EPISODES {
                self.recent.pop_front();
            }
            self.recent.push_back(e.clone());
            self.episodes.push(e);
            if let Some(max) = opts.max_episodes {
                if self.episodes.len() > max {
                    let excess = self.episodes.len() - max;
                    for gone in self.episodes.drain(..excess) {
                        for d in self.dropped.iter_mut().filter(|d| gone.end - gone.start >= d.threshold) {
                            d.count += 1;
                            d.frames.add(&gone);
                        }
                    }
                    self.episodes_dropped += excess as u64;
                }
            }
            if let Some(max) = opts.max_listed {
                if self.episodes.len() > max.max(1) {
                    // The shortest (the earliest of equals) is let go of: summed by frame and
                    // counted in its window.
                    let shortest = (0..self.episodes.len())
                        .min_by(|a, b| self.episodes[*a].duration_ms.total_cmp(&self.episodes[*b].duration_ms))
                        .unwrap_or(0);
                    let gone = self.episodes.remove(shortest);
                    self.omitted.add(&gone);
                    self.omitted_count += 1;
                    if opts.window > 0.0 {
                        let k = ((gone.start - opts.origin) / opts.window).floor();
                        if k >= 0.0 {
                            if let Some(w) = (k as usize).checked_sub(self.windows_base).and_then(|i| self.windows.get_mut(i)) {
                                w.omitted_episodes += 1;
                            }
                        }
                    }
                }
            }
        }
    }

    /// The loop's figures now, with episodes at least `threshold` long; `ended`: where the
    /// windows stop (the recording's end).
    pub fn summary(&self, rec: &Recording, opts: &StreamOptions, threshold: f64, ended: f64) -> LoopSummary {
        // The last sample's weight: one interval.
        let mut wall = self.wall;
        let (mut busy_w, mut idle_w, mut unknown_w, mut stopped_w) = (self.busy_w, self.idle_w, self.unknown_w, self.stopped_w);
        let mut windows = self.windows.clone();
        if let Some(p) = &self.pending {
            let mut tail = self.clone_shares();
            tail.windows_base = self.windows_base;
            // The tail must not drop windows: the list is cut to `max_windows` below.
            let opts_tail = StreamOptions { max_windows: None, ..*opts };
            tail.settle_into(p, opts.interval, &opts_tail, &mut windows);
            wall += tail.wall;
            busy_w += tail.busy_w;
            idle_w += tail.idle_w;
            unknown_w += tail.unknown_w;
            stopped_w += tail.stopped_w;
        }
        let share = |w: f64| if wall > 0.0 { 100.0 * w / wall } else { 0.0 };
        // Episodes dropped (`max_episodes`) still count at a threshold they were kept for.
        let dropped = self.dropped.iter().find(|d| (d.threshold - threshold).abs() < 1e-9);
        // The run in progress counts as an episode of its own (ongoing) when long enough.
        // Room for the run in progress too (a long list would otherwise double to add it).
        let mut episodes: Vec<Episode> = Vec::with_capacity(self.episodes.len() + 1);
        episodes.extend(self.episodes.iter().filter(|e| e.end - e.start >= threshold).cloned());
        if let Some(run) = &self.run {
            let next = run.after_t;
            if let Some(e) = run_episode(rec, opts, run, next, self.loop_index) {
                if e.end - e.start >= threshold {
                    episodes.push(e);
                }
            }
        }
        let busy_now_ms = match &self.pending {
            Some(last) if is_busy(last.state) => match self.last_busy_for {
                Some(b) => Some(b as f64 * 1e3),
                None => self.busy_since.map(|since| (last.t - since) * 1e3),
            },
            _ => None,
        };
        let windows = if opts.window > 0.0 && self.samples > 0 {
            // Windows up to the end (those without samples too), from the oldest kept.
            let n = (((ended - opts.origin).max(0.0) / opts.window).ceil() as usize).max(1).saturating_sub(self.windows_base).max(1);
            windows.resize(n.max(windows.len()), WindowAcc::default());
            windows.truncate(n);
            let skip = opts.max_windows.map_or(0, |max| windows.len().saturating_sub(max.max(1)));
            windows.iter().enumerate().skip(skip).map(|(k, acc)| acc.window(self.windows_base + k, rec, opts, &episodes)).collect()
        } else {
            Vec::new()
        };
        let (task_series, tasks) = task_figures(rec, self.loop_index, opts.since);
        LoopSummary {
            loop_index: self.loop_index,
            samples: self.samples,
            wall_s: wall,
            select_pct: share(idle_w),
            busy_pct: share(busy_w),
            unknown_pct: share(unknown_w),
            stopped_pct: share(stopped_w),
            lag: {
                let mut l = self.lag.stats();
                l.p50_ms = l.p50_ms.min(l.max_ms);
                l.p99_ms = l.p99_ms.min(l.max_ms);
                l.unknown_samples = self.lag_unknown;
                l
            },
            ready: ReadyStats {
                mean: if self.samples > 0 { self.ready_sum / self.samples as f64 } else { 0.0 },
                max: self.ready_max,
                last: self.ready_last,
                trend_per_s: self.ready_trend.slope(),
            },
            busy_now_ms,
            longest_busy_ms: self.longest_busy * 1e3,
            windows,
            episodes,
            episodes_omitted: self.omitted_count + dropped.map_or(0, |d| d.count),
            omitted_frames: match dropped {
                Some(d) if !d.frames.is_empty() => {
                    let mut all = self.omitted.clone();
                    all.merge(&d.frames);
                    all
                }
                _ => self.omitted.clone(),
            },
            tasks,
            task_series,
        }
    }

    /// A zeroed copy for accounting the pending sample without changing the stream.
    fn clone_shares(&self) -> LoopStream {
        LoopStream::new(self.loop_index)
    }

    fn settle_into(&mut self, s: &Sample, w: f64, opts: &StreamOptions, windows: &mut Vec<WindowAcc>) {
        std::mem::swap(&mut self.windows, windows);
        // (`self` is a zeroed copy: its windows are the stream's, from the same base.)
        self.settle(s, w, opts);
        std::mem::swap(&mut self.windows, windows);
    }

    /// The episodes kept so far (at least the keep threshold), oldest first.
    pub fn episodes(&self) -> &[Episode] {
        &self.episodes
    }

    /// Episodes dropped to keep at most `max_episodes` (the oldest).
    pub fn episodes_dropped(&self) -> u64 {
        self.episodes_dropped
    }

    /// Episodes that ended so far (at least `keep_threshold` long), listed or not.
    pub fn ended_total(&self) -> u64 {
        self.ended
    }

    /// The last episodes that ended, oldest first (at most [`RECENT_EPISODES`]).
    pub fn recent(&self) -> &std::collections::VecDeque<Episode> {
        &self.recent
    }

    /// The last sample taken, and the last whose state was known.
    pub fn last(&self) -> Option<&Sample> {
        self.pending.as_ref()
    }

    pub fn last_known(&self) -> Option<&Sample> {
        self.last_known.as_ref()
    }

    /// The callback the loop is in at its last known sample: how long it has run (from the
    /// start an episode of it would have), what it is blamed on, its task. `None` when the
    /// loop is not in a callback.
    pub fn current_run(&self, rec: &Recording, opts: &StreamOptions) -> Option<CurrentRun> {
        let last = self.last_known.as_ref()?;
        let run = self.run.as_ref()?;
        if last.state != LoopState::Callback || run.callback != last.callback || run.last_t != last.t {
            return None;
        }
        let start = match run.before_t {
            None => run.first_t,
            Some(prev) => run.first_t - ((run.first_t - prev) / 2.0).min(opts.interval),
        };
        // A run held mostly by the garbage collector is blamed on it, as its episode will be.
        let mut blame = blame_counts(rec, run.stacks.items());
        if let (Some(b), true) = (&mut blame, run.gc.pct().is_some_and(|p| p >= super::metrics::GC_BLAME_PCT)) {
            b.function = super::metrics::GC_FUNCTION.into();
            b.file.clear();
            b.line = 0;
        }
        Some(CurrentRun {
            duration_ms: (last.t - start).max(0.0) * 1e3,
            samples: run.busy,
            blame,
            task: run.tasks.mode().map(|t| rec.tasks.get(t).to_string()),
        })
    }

    /// Blocking episodes so far: those that ended and the callback running now, once it has
    /// run at least `keep_threshold` (a status line's count).
    pub fn episodes_now(&self, rec: &Recording, opts: &StreamOptions) -> u64 {
        let running = self.current_run(rec, opts).is_some_and(|r| r.duration_ms >= opts.keep_threshold * 1e3);
        self.ended + running as u64
    }

    /// Busy share (percent) of the window the last sample falls in, so far.
    pub fn busy_now_pct(&self, opts: &StreamOptions) -> f64 {
        let Some(last) = &self.pending else { return 0.0 };
        if opts.window <= 0.0 {
            return 0.0;
        }
        let k = ((last.t - opts.origin) / opts.window).floor();
        let acc = if k >= 0.0 { (k as usize).checked_sub(self.windows_base).and_then(|i| self.windows.get(i)) } else { None };
        let (mut w, mut busy) = acc.map_or((0.0, 0.0), |a| (a.weight, a.busy));
        // The last sample itself, for one interval.
        w += opts.interval;
        if is_busy(last.state) {
            busy += opts.interval;
        }
        100.0 * busy / w
    }

    /// The first window this loop has (its first second; later with
    /// [`StreamOptions::max_windows`]).
    pub fn first_window(&self) -> usize {
        self.windows_base
    }

    /// Windows complete so far: every one before the window the last sample falls in (its
    /// samples are all settled). Window `k` of them is [`window`](LoopStream::window)`(k)`.
    pub fn complete_windows(&self, opts: &StreamOptions) -> usize {
        let Some(last) = &self.pending else { return 0 };
        if opts.window <= 0.0 {
            return 0;
        }
        let k = ((last.t - opts.origin) / opts.window).floor();
        if (0.0..1e9).contains(&k) {
            k as usize
        } else {
            0
        }
    }

    /// Window `k`'s figures as they stand (episodes counted: those kept that started in it).
    pub fn window(&self, rec: &Recording, opts: &StreamOptions, k: usize) -> Window {
        k.checked_sub(self.windows_base).and_then(|i| self.windows.get(i)).cloned().unwrap_or_default().window(k, rec, opts, &self.episodes)
    }

    /// With [`StreamOptions::fold`]: µs per (stack, category) of every sample so far, as
    /// `flamegraph::fold` weighs a whole recording (the last sample one interval; the run in
    /// progress blocking if it is already an episode).
    pub fn folded(&self, rec: &Recording, opts: &StreamOptions) -> HashMap<(u32, Category), u64> {
        let mut out = self.fold.clone();
        let mut open = self.run.as_ref().map(|r| r.weights.clone()).unwrap_or_default();
        if let Some(p) = &self.pending {
            let us = weight_us(opts.interval);
            match (category_of(p.state), self.run.is_some()) {
                (None, true) => *open.entry(p.stack).or_insert(0) += us,
                (None, false) => *out.entry((p.stack, Category::Busy)).or_insert(0) += us,
                (Some(cat), _) => *out.entry((p.stack, cat)).or_insert(0) += us,
            }
        }
        if let Some(run) = &self.run {
            let blocking =
                run_episode(rec, opts, run, run.after_t, self.loop_index).is_some_and(|e| e.end - e.start >= opts.keep_threshold);
            let cat = if blocking { Category::Blocked } else { Category::Busy };
            for (stack, us) in open {
                *out.entry((stack, cat)).or_insert(0) += us;
            }
        }
        out
    }

    /// With [`StreamOptions::fold`]: the loop's own frames (outermost) of each folded stack.
    pub fn folded_loop_frames(&self) -> &HashMap<u32, u16> {
        &self.fold_loop_frames
    }

    /// Samples taken of this loop.
    pub fn sample_count(&self) -> u32 {
        self.samples
    }
}

fn add_to_run(run: &mut RunAcc, s: &Sample) {
    if !is_busy(s.state) {
        return;
    }
    run.busy += 1;
    run.gc.add(s.gc);
    run.stacks.add((s.stack, s.loop_frames));
    if let Some(t) = s.task {
        run.tasks.add(t);
    }
    match s.activity {
        ThreadActivity::OnCpu => run.on_cpu += 1,
        a @ (ThreadActivity::Waiting(_) | ThreadActivity::Blocked) => run.waits.add(a),
        ThreadActivity::Unknown => {}
    }
}

/// A run as an episode, if it has the samples one needs (its length is not checked here).
fn run_episode(rec: &Recording, opts: &StreamOptions, run: &RunAcc, next: Option<f64>, loop_index: u16) -> Option<Episode> {
    if run.busy < MIN_EPISODE_SAMPLES {
        return None;
    }
    let interval = opts.interval;
    let (start, start_error) = match run.before_t {
        None => (run.first_t, 0.0),
        Some(prev) => {
            let start = run.first_t - ((run.first_t - prev) / 2.0).min(interval);
            (start, (start - prev).max(run.first_t - start))
        }
    };
    let (end, end_error, ongoing) = match next {
        None => (run.last_t, 0.0, true),
        Some(next) => {
            let end = run.last_t + ((next - run.last_t) / 2.0).min(interval);
            (end, (next - end).max(end - run.last_t), false)
        }
    };
    let blamed = blame_counts(rec, run.stacks.items());
    let (function, file, line, innermost) = match blamed {
        Some(b) => (b.function, b.file, b.line, b.innermost),
        None => ("<unknown>".to_string(), String::new(), 0, FrameInfo { function: "<unknown>".into(), file: String::new(), line: 0 }),
    };
    let waiting: usize = run.waits.items().iter().map(|(_, c)| *c as usize).sum();
    let on_cpu = run.on_cpu > waiting;
    let mut e = Episode {
        loop_index,
        start,
        end,
        start_s: start - rec.started,
        duration_ms: (end - start) * 1e3,
        duration_error_ms: (start_error + end_error) * 1e3,
        ongoing,
        samples: run.busy as u32,
        function,
        file,
        line,
        innermost,
        task: run.tasks.mode().map(|t| rec.tasks.get(t).to_string()),
        on_cpu,
        waiting_in: if on_cpu { None } else { run.waits.mode().map(|a| a.describe()) },
        stack: mode_weighted(run.stacks.items().iter().map(|((stack, _), c)| (*stack, *c as usize))).unwrap_or(0),
        gc_pct: None,
        gc_generation: None,
        gc_interrupted: None,
    };
    run.gc.apply(&mut e);
    Some(e)
}

/// A sample's weight in whole microseconds, as flame graphs count it.
pub fn weight_us(seconds: f64) -> u64 {
    (seconds * 1e6).round() as u64
}

/// The category of a sample's time when its state alone says it; `None` for a busy sample
/// (blocking or busy depends on its run).
fn category_of(state: LoopState) -> Option<Category> {
    match state {
        LoopState::Idle => Some(Category::Idle),
        LoopState::Unknown => Some(Category::Unknown),
        LoopState::Stopped => Some(Category::Stopped),
        state if is_busy(state) => None,
        _ => Some(Category::Unknown),
    }
}

fn lag_ms(s: &Sample) -> Option<f64> {
    s.lag_ms()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Task counts of a loop from `since` on: the series and its figures.
fn task_figures(rec: &Recording, loop_index: u16, since: f64) -> (Vec<TaskPoint>, Option<TaskStats>) {
    let counts: Vec<&crate::capture::recording::TaskCountSample> =
        rec.task_counts.iter().filter(|c| c.loop_index == loop_index && c.t >= since).collect();
    let series: Vec<TaskPoint> =
        counts.iter().map(|c| TaskPoint { t_s: c.t - rec.started, pending: c.counts.pending, total: c.counts.total }).collect();
    let mut trend = Slope::default();
    for p in &series {
        trend.add(p.t_s, p.pending as f64);
    }
    let stats = (!counts.is_empty()).then(|| TaskStats {
        counts: counts.len() as u32,
        pending_last: counts.last().map(|c| c.counts.pending).unwrap_or(0),
        pending_max: counts.iter().map(|c| c.counts.pending).max().unwrap_or(0),
        pending_trend_per_s: trend.slope(),
        truncated: counts.iter().any(|c| c.truncated),
    });
    (series, stats)
}

/// Other threads' samples (`--all-threads`) folded as they come: µs per (thread, stack),
/// each sample weighing the time to that thread's next (at most two intervals; the last one
/// interval), as `flamegraph::fold` weighs them.
#[derive(Debug, Clone, Default)]
pub struct ThreadsFold {
    interval: f64,
    pending: HashMap<u32, (f64, u32)>,
    by: HashMap<(u32, u32), u64>,
}

impl ThreadsFold {
    pub fn new(interval: f64) -> Self {
        ThreadsFold { interval, ..Default::default() }
    }

    pub fn push(&mut self, s: &crate::capture::recording::ThreadSample) {
        if let Some((t, stack)) = self.pending.insert(s.thread, (s.t, s.stack)) {
            *self.by.entry((s.thread, stack)).or_insert(0) += weight_us((s.t - t).clamp(0.0, 2.0 * self.interval));
        }
    }

    /// µs per (thread, stack) so far.
    pub fn folded(&self) -> HashMap<(u32, u32), u64> {
        let mut out = self.by.clone();
        for (thread, (_, stack)) in &self.pending {
            *out.entry((*thread, *stack)).or_insert(0) += weight_us(self.interval);
        }
        out
    }
}

/// Every loop of a recording, streamed.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub opts: StreamOptions,
    loops: Vec<LoopStream>,
    /// Thresholds at which episodes dropped by `max_episodes` are summed.
    dropped_at: Vec<f64>,
}

impl Stream {
    pub fn new(opts: StreamOptions) -> Self {
        Stream { opts, loops: Vec::new(), dropped_at: Vec::new() }
    }

    /// Sum the episodes `max_episodes` drops by frame at each of `thresholds` (those a view
    /// may show): a summary at one of them counts them and lists their frames, in memory that
    /// grows with the frames, not the episodes. At any other threshold they are left out.
    pub fn keeping_dropped_at(mut self, thresholds: &[f64]) -> Self {
        self.dropped_at = thresholds.to_vec();
        self.dropped_at.sort_by(f64::total_cmp);
        self.dropped_at.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        self
    }

    /// Take a sample (in time order for its loop).
    pub fn push(&mut self, rec: &Recording, s: &Sample) {
        let i = s.loop_index as usize;
        while self.loops.len() <= i {
            let mut l = LoopStream::new(self.loops.len() as u16);
            l.dropped = self.dropped_at.iter().map(|t| DroppedAt { threshold: *t, count: 0, frames: FrameTotals::default() }).collect();
            self.loops.push(l);
        }
        self.loops[i].push(rec, &self.opts, s);
    }

    /// Blocking episodes so far over every loop ([`LoopStream::episodes_now`]).
    pub fn episodes_now(&self, rec: &Recording) -> u64 {
        self.loops.iter().map(|l| l.episodes_now(rec, &self.opts)).sum()
    }

    pub fn loop_stream(&self, i: usize) -> Option<&LoopStream> {
        self.loops.get(i)
    }

    /// A whole recording, streamed.
    pub fn over(rec: &Recording, opts: StreamOptions) -> Stream {
        Self::over_keeping_dropped(rec, opts, &[])
    }

    /// A whole recording, streamed, summing what `max_episodes` drops at `thresholds`
    /// ([`Stream::keeping_dropped_at`]).
    pub fn over_keeping_dropped(rec: &Recording, opts: StreamOptions, thresholds: &[f64]) -> Stream {
        let mut stream = Stream::new(opts).keeping_dropped_at(thresholds);
        for s in rec.samples.iter().filter(|s| s.t >= opts.since) {
            stream.push(rec, s);
        }
        stream
    }

    /// Per loop of the recording (those without samples too), the figures now.
    pub fn summaries(&self, rec: &Recording, threshold: f64) -> Vec<LoopSummary> {
        (0..rec.loops.len())
            .map(|i| match self.loops.get(i) {
                Some(l) => l.summary(rec, &self.opts, threshold, rec.ended),
                None => LoopStream::new(i as u16).summary(rec, &self.opts, threshold, rec.ended),
            })
            .collect()
    }
}
