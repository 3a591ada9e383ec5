//! The figures as first written, sample by sample over a whole recording: a reference the
//! streaming computation ([`super::stream`]) is checked against on random recordings. Test
//! code only.

use super::metrics::*;
use crate::asyncio::loopstate::LoopState;
use crate::capture::recording::{Recording, Sample, ThreadActivity};

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn lag_stats(samples: &[&Sample]) -> LagStats {
    let mut lags: Vec<f64> = samples.iter().filter_map(|s| s.lag_ms()).collect();
    lags.sort_by(f64::total_cmp);
    LagStats {
        p50_ms: percentile(&lags, 0.5),
        p99_ms: percentile(&lags, 0.99),
        max_ms: lags.last().copied().unwrap_or(0.0),
        unknown_samples: samples.iter().filter(|s| s.lag_ms().is_none()).count() as u32,
    }
}

/// Time each sample stands for: up to the next sample, capped at two intervals (a gap means
/// loopspy itself was late; do not let one sample claim it all).
pub fn weights(samples: &[&Sample], interval: f64) -> Vec<f64> {
    let mut w: Vec<f64> = samples.windows(2).map(|p| (p[1].t - p[0].t).clamp(0.0, 2.0 * interval)).collect();
    if !samples.is_empty() {
        w.push(interval);
    }
    w
}

pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return 0.0;
    }
    points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx
}

/// A run of consecutive busy samples in one callback: indices into the loop's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: usize,
    pub last: usize,
}

/// Split a loop's samples into busy runs: maximal stretches of busy samples with the same
/// callback identity. A sample whose state is unknown between two samples of one callback
/// does not split it (nor do failed looks, which are not samples); an idle sample or another
/// callback does.
pub fn busy_runs(samples: &[&Sample]) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut open: Option<Run> = None;
    for (i, s) in samples.iter().enumerate() {
        if s.state == LoopState::Unknown {
            continue;
        }
        let busy = is_busy(s.state);
        match open {
            Some(run) if busy && samples[run.last].callback == s.callback => open = Some(Run { last: i, ..run }),
            Some(run) => {
                runs.push(run);
                open = busy.then_some(Run { first: i, last: i });
            }
            None => open = busy.then_some(Run { first: i, last: i }),
        }
    }
    runs.extend(open);
    runs
}

/// Busy samples in a run (unknown ones inside it are not counted).
pub fn run_samples(samples: &[&Sample], run: Run) -> usize {
    samples[run.first..=run.last].iter().filter(|s| is_busy(s.state)).count()
}

/// Start and end of a run: halfway to the neighbouring samples, but never more than one
/// sample interval beyond the run's own samples (a gap of failed looks says nothing about
/// when the run started), or the sample itself at the edges of the recording.
pub fn run_bounds(samples: &[&Sample], run: Run, interval: f64) -> (f64, f64, bool) {
    let b = bounds(samples, run, interval);
    (b.start, b.end, b.ongoing)
}

/// A run's estimated start and end, and how far each may be from the truth: the run began
/// after the sample before it and by its own first sample (and ended likewise), so the error
/// at each end is the larger distance from the estimate to those two samples. At the edges
/// of the recording there is no sample outside the run: the error there is 0 and the run's
/// duration is a lower bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    start: f64,
    end: f64,
    ongoing: bool,
    /// Seconds: the most the estimated duration can be off by.
    error: f64,
}

pub fn bounds(samples: &[&Sample], run: Run, interval: f64) -> Bounds {
    let first = samples[run.first].t;
    let (start, start_error) = match run.first {
        0 => (first, 0.0),
        i => {
            let prev = samples[i - 1].t;
            let start = first - ((first - prev) / 2.0).min(interval);
            (start, (start - prev).max(first - start))
        }
    };
    let last = samples[run.last].t;
    let ongoing = run.last + 1 == samples.len();
    let (end, end_error) = if ongoing {
        (last, 0.0)
    } else {
        let next = samples[run.last + 1].t;
        let end = last + ((next - last) / 2.0).min(interval);
        (end, (next - end).max(end - last))
    };
    Bounds { start, end, ongoing, error: start_error + end_error }
}

/// The most frequent item; ties go to the one seen first.
/// Describe one run as an episode.
pub fn episode(rec: &Recording, samples: &[&Sample], run: Run, loop_index: u16) -> Episode {
    let Bounds { start, end, ongoing, error } = bounds(samples, run, rec.interval());
    let span: Vec<&Sample> = samples[run.first..=run.last].iter().filter(|s| is_busy(s.state)).copied().collect();
    let blamed = blame(rec, &span);
    let (function, file, line, innermost) = match blamed {
        Some(b) => (b.function, b.file, b.line, b.innermost),
        None => ("<unknown>".to_string(), String::new(), 0, FrameInfo { function: "<unknown>".into(), file: String::new(), line: 0 }),
    };
    let task = mode(span.iter().filter_map(|s| s.task)).map(|t| rec.tasks.get(t).to_string());
    let on_cpu_samples = span.iter().filter(|s| s.activity == ThreadActivity::OnCpu).count();
    let waiting: Vec<ThreadActivity> =
        span.iter().map(|s| s.activity).filter(|a| matches!(a, ThreadActivity::Waiting(_) | ThreadActivity::Blocked)).collect();
    let on_cpu = on_cpu_samples > waiting.len();
    let waiting_in = if on_cpu { None } else { mode(waiting.into_iter()).map(|a| a.describe()) };
    let stack = mode(span.iter().map(|s| s.stack)).unwrap_or(0);
    let mut gc = crate::analysis::metrics::GcShare::default();
    for s in &span {
        gc.add(s.gc);
    }
    let mut e = Episode {
        loop_index,
        start,
        end,
        start_s: start - rec.started,
        duration_ms: (end - start) * 1e3,
        duration_error_ms: error * 1e3,
        ongoing,
        samples: span.len() as u32,
        function,
        file,
        line,
        innermost,
        task,
        on_cpu,
        waiting_in,
        stack,
        gc_pct: None,
        gc_generation: None,
        gc_interrupted: None,
    };
    gc.apply(&mut e);
    e
}

/// The per-window figures: one pass over the samples (in time order), each put in the window
/// its time falls in.
pub fn per_window(rec: &Recording, samples: &[&Sample], w: &[f64], episodes: &[Episode], origin: f64, window: f64) -> Vec<Window> {
    let n = (((rec.ended - origin).max(0.0) / window).ceil() as usize).max(1);
    let index = |t: f64| -> Option<usize> {
        let k = ((t - origin) / window).floor();
        (k >= 0.0 && (k as usize) < n).then_some(k as usize)
    };
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, s) in samples.iter().enumerate() {
        if let Some(k) = index(s.t) {
            members[k].push(i);
        }
    }
    let mut episode_counts = vec![0u32; n];
    for e in episodes {
        if let Some(k) = index(e.start) {
            episode_counts[k] += 1;
        }
    }
    members
        .iter()
        .enumerate()
        .map(|(k, idx)| {
            let in_w: Vec<&Sample> = idx.iter().map(|i| samples[*i]).collect();
            let ww: f64 = idx.iter().map(|i| w[*i]).sum();
            // (A float sum of nothing is -0.0: start from 0.0 so nothing prints as "-0.0".)
            let busy: f64 = idx.iter().filter(|i| is_busy(samples[**i].state)).map(|i| w[*i]).fold(0.0, |a, b| a + b);
            let lag = lag_stats(&in_w);
            Window {
                start_s: origin + k as f64 * window - rec.started,
                samples: in_w.len() as u32,
                busy_pct: if ww > 0.0 { 100.0 * busy / ww } else { 0.0 },
                lag_p99_ms: lag.p99_ms,
                lag_max_ms: lag.max_ms,
                ready_mean: if in_w.is_empty() { 0.0 } else { in_w.iter().map(|s| s.ready as f64).sum::<f64>() / in_w.len() as f64 },
                ready_max: in_w.iter().map(|s| s.ready).max().unwrap_or(0),
                episodes: episode_counts[k],
            }
        })
        .collect()
}

pub fn summarize_loop(rec: &Recording, loop_index: u16, opts: &Options) -> LoopSummary {
    let since = opts.since.unwrap_or(f64::MIN);
    let samples: Vec<&Sample> = rec.samples.iter().filter(|s| s.loop_index == loop_index && s.t >= since).collect();
    let origin = opts.since.unwrap_or(rec.started).max(rec.started);
    let w = weights(&samples, rec.interval());
    let wall: f64 = w.iter().sum();
    let share = |pred: &dyn Fn(&Sample) -> bool| -> f64 {
        if wall == 0.0 {
            return 0.0;
        }
        // (A float sum of nothing is -0.0: start from 0.0 so nothing prints as "-0.0".)
        100.0 * samples.iter().zip(&w).filter(|(s, _)| pred(s)).map(|(_, w)| w).fold(0.0, |a, b| a + b) / wall
    };
    let busy_pct = share(&|s| is_busy(s.state));
    let select_pct = share(&|s| s.state == LoopState::Idle);
    let unknown_pct = share(&|s| s.state == LoopState::Unknown);
    let stopped_pct = share(&|s| s.state == LoopState::Stopped);

    let runs = busy_runs(&samples);
    let episodes: Vec<Episode> = runs
        .iter()
        .filter(|run| {
            let (start, end, _) = run_bounds(&samples, **run, rec.interval());
            run_samples(&samples, **run) >= MIN_EPISODE_SAMPLES && end - start >= opts.threshold
        })
        .map(|run| episode(rec, &samples, *run, loop_index))
        .collect();
    // A busy stretch across several callbacks counts for the current-iteration figure.
    let mut longest_busy: f64 = 0.0;
    let mut busy_since: Option<f64> = None;
    for (i, s) in samples.iter().enumerate() {
        if is_busy(s.state) {
            let start = *busy_since.get_or_insert(if i == 0 { s.t } else { (samples[i - 1].t + s.t) / 2.0 });
            longest_busy = longest_busy.max(s.t - start);
        } else {
            busy_since = None;
        }
    }
    let busy_now_ms = match samples.last() {
        Some(last) if is_busy(last.state) => match last.busy_for {
            Some(b) => Some(b as f64 * 1e3),
            None => busy_since.map(|since| (last.t - since) * 1e3),
        },
        _ => None,
    };

    let ready = ReadyStats {
        mean: if samples.is_empty() { 0.0 } else { samples.iter().map(|s| s.ready as f64).sum::<f64>() / samples.len() as f64 },
        max: samples.iter().map(|s| s.ready).max().unwrap_or(0),
        last: samples.last().map(|s| s.ready).unwrap_or(0),
        trend_per_s: slope(&samples.iter().map(|s| (s.t - rec.started, s.ready as f64)).collect::<Vec<_>>()),
    };

    let windows =
        if opts.window > 0.0 && !samples.is_empty() { per_window(rec, &samples, &w, &episodes, origin, opts.window) } else { Vec::new() };

    let counts: Vec<&crate::capture::recording::TaskCountSample> =
        rec.task_counts.iter().filter(|c| c.loop_index == loop_index && c.t >= since).collect();
    let task_series: Vec<TaskPoint> =
        counts.iter().map(|c| TaskPoint { t_s: c.t - rec.started, pending: c.counts.pending, total: c.counts.total }).collect();
    let tasks = (!counts.is_empty()).then(|| TaskStats {
        counts: counts.len() as u32,
        pending_last: counts.last().map(|c| c.counts.pending).unwrap_or(0),
        pending_max: counts.iter().map(|c| c.counts.pending).max().unwrap_or(0),
        pending_trend_per_s: slope(&task_series.iter().map(|p| (p.t_s, p.pending as f64)).collect::<Vec<_>>()),
        truncated: counts.iter().any(|c| c.truncated),
    });

    LoopSummary {
        loop_index,
        samples: samples.len() as u32,
        wall_s: wall,
        select_pct,
        busy_pct,
        unknown_pct,
        stopped_pct,
        lag: lag_stats(&samples),
        ready,
        busy_now_ms,
        longest_busy_ms: longest_busy * 1e3,
        windows,
        episodes,
        episodes_omitted: 0,
        omitted_frames: Default::default(),
        tasks,
        task_series,
    }
}
