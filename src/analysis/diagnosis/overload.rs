//! Overload: more work arrives than the loop can run. The ready queue (or, where the work
//! waits in the sockets, the lag) keeps growing and the loop is busy nearly all the time, but
//! no callback runs long: there is no single blocker to fix, only too much work for one
//! thread.

use super::{ms_text, Diagnosis, Evidence, Inputs, Kind};

/// The loop must have been busy at least this share of the time (percent) ...
pub const MIN_BUSY_PCT: f64 = 80.0;
/// ... its ready queue must grow at least this fast (least-squares slope, callbacks/s) ...
pub const MIN_READY_TREND: f64 = 5.0;
/// ... the mean depth of the last third of the seconds at least this much above the first
/// third's, and at least [`MIN_READY_RISE_SHARE`] of it above (a queue already long when the
/// recording starts still counts when it keeps growing) ...
pub const MIN_READY_RISE: f64 = 10.0;
pub const MIN_READY_RISE_SHARE: f64 = 0.2;
/// ... or (work piling up where the ready queue does not show it: asyncio runs the
/// callbacks ready when an iteration starts, and what arrives meanwhile waits in the
/// sockets, so one iteration grows longer than the last) the lag p99 of the last third at
/// least this much (ms) above the first third's, and at least [`MIN_READY_RISE_SHARE`] above
/// it ...
pub const MIN_LAG_RISE_MS: f64 = 100.0;
/// ... over at least this many seconds ...
pub const MIN_WINDOWS: usize = 3;
/// ... and blocking episodes must account for less than this share of the busy time (else
/// the blockers are the diagnosis).
pub const MAX_EPISODE_SHARE: f64 = 0.5;

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut sum) = (0usize, 0.0);
    for x in xs {
        n += 1;
        sum += x;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

pub fn diagnose(i: &Inputs) -> Option<Diagnosis> {
    let s = i.summary;
    let windows: Vec<_> = s.windows.iter().filter(|w| w.samples > 0).collect();
    if windows.len() < MIN_WINDOWS || s.busy_pct < MIN_BUSY_PCT {
        return None;
    }
    let third = windows.len().div_ceil(3);
    let first = &windows[..third];
    let last = &windows[windows.len() - third..];
    let (ready_first, ready_last) = (mean(first.iter().map(|w| w.ready_mean)), mean(last.iter().map(|w| w.ready_mean)));
    let (lag_first, lag_last) = (mean(first.iter().map(|w| w.lag_p99_ms)), mean(last.iter().map(|w| w.lag_p99_ms)));
    let ready_grows =
        s.ready.trend_per_s >= MIN_READY_TREND && ready_last - ready_first >= MIN_READY_RISE.max(MIN_READY_RISE_SHARE * ready_first);
    let lag_grows = lag_last - lag_first >= MIN_LAG_RISE_MS.max(MIN_READY_RISE_SHARE * lag_first);
    if !ready_grows && !lag_grows {
        return None;
    }
    let busy_ms = s.busy_pct / 100.0 * s.wall_s * 1e3;
    // Episodes no longer listed (a long run) blocked too.
    let blocked_ms = s.episodes.iter().fold(0.0, |a, e| a + e.duration_ms) + s.omitted_frames.total().1;
    let episode_share = if busy_ms > 0.0 { blocked_ms / busy_ms } else { 0.0 };
    if episode_share >= MAX_EPISODE_SHARE {
        return None;
    }
    let title = if ready_grows {
        format!(
            "overload: the ready queue grows by {:+.0} callbacks/s (mean {:.0} → {:.0}) with the loop {:.0} % busy and no single blocker",
            s.ready.trend_per_s, ready_first, ready_last, s.busy_pct
        )
    } else {
        format!(
            "overload: the loop falls further behind (lag p99 {} → {}) with the loop {:.0} % busy and no single blocker",
            ms_text(lag_first),
            ms_text(lag_last),
            s.busy_pct
        )
    };
    let evidence = vec![
        Evidence::new("ready queue trend", format!("{:+.1} callbacks/s", s.ready.trend_per_s)),
        Evidence::new(
            "ready queue",
            format!("mean {ready_first:.1} in the first {third} s, {ready_last:.1} in the last {third} s, max {}", s.ready.max),
        ),
        Evidence::new("busy", format!("{:.1} % of {:.1} s", s.busy_pct, s.wall_s)),
        Evidence::new("lag p99", format!("{} in the first {third} s, {} in the last {third} s", ms_text(lag_first), ms_text(lag_last))),
        Evidence::new(
            "blocking episodes",
            format!("{} ({:.0} % of the busy time): no single callback to blame", s.episodes.len(), episode_share * 100.0),
        ),
    ];
    Some(Diagnosis {
        kind: Kind::Overload,
        loop_index: s.loop_index,
        title,
        evidence,
        next_step: "more work arrives than one loop can run: add worker processes (gunicorn/uvicorn --workers, one loop per core) and apply backpressure (an asyncio.Semaphore around handlers, a bounded asyncio.Queue, a limit on connections) so that excess load is refused early instead of queued".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::metrics::{analyze, tests::script, Options};

    #[test]
    fn a_growing_queue_without_a_blocker_is_overload() {
        // 100 Hz, 5 s: callbacks a and b alternate (never one long run), the queue grows.
        let mut rec = script(100.0, &"ab".repeat(250));
        for (k, s) in rec.samples.iter_mut().enumerate() {
            s.ready = (k as u32) * 2;
            s.callback = Some(k as u64);
        }
        let a = analyze(&rec, &Options::default());
        assert!(a.loops[0].episodes.is_empty());
        let d = a.diagnoses.iter().find(|d| d.kind == Kind::Overload).expect("diagnosed");
        assert!(d.title.contains("+200 callbacks/s"), "{d:?}");
        // The same queue with one callback running all along: a blocker, not overload.
        let mut blocked = script(100.0, &"a".repeat(500));
        for (k, s) in blocked.samples.iter_mut().enumerate() {
            s.ready = (k as u32) * 2;
        }
        let a = analyze(&blocked, &Options::default());
        assert!(!a.diagnoses.iter().any(|d| d.kind == Kind::Overload), "{:?}", a.diagnoses);
        // Blocks that a long run no longer lists still blocked: six 1 s blocks, one listed
        // (and the last, still running): the two listed are a third of the busy time.
        let mut blocks = script(100.0, &"a".repeat(600));
        for (k, s) in blocks.samples.iter_mut().enumerate() {
            s.ready = (k as u32) * 2;
            s.callback = Some((k / 100) as u64);
        }
        let one = crate::analysis::stream::StreamOptions {
            max_listed: Some(1),
            ..crate::analysis::stream::StreamOptions::for_recording(&blocks, 0.1, 1.0)
        };
        let a = crate::analysis::metrics::analysis_of(&crate::analysis::stream::Stream::over(&blocks, one), &blocks, 0.1);
        assert_eq!((a.loops[0].episodes.len(), a.loops[0].episodes_omitted), (2, 4));
        assert!(!a.diagnoses.iter().any(|d| d.kind == Kind::Overload), "{:?}", a.diagnoses);
        // A steady queue but a lag that grows (the work waits in the sockets): overload.
        let mut behind = script(100.0, &"ab".repeat(250));
        for (k, s) in behind.samples.iter_mut().enumerate() {
            s.callback = Some(k as u64);
            s.lateness = Some(k as f32 * 0.002);
        }
        let a = analyze(&behind, &Options::default());
        let d = a.diagnoses.iter().find(|d| d.kind == Kind::Overload).expect("lag growth diagnosed");
        assert!(d.title.contains("falls further behind"), "{d:?}");
        // Busy and a steady queue: not overload.
        let mut steady = script(100.0, &"ab".repeat(250));
        for s in steady.samples.iter_mut() {
            s.lateness = Some(0.02);
        }
        assert!(!analyze(&steady, &Options::default()).diagnoses.iter().any(|d| d.kind == Kind::Overload));
    }
}
