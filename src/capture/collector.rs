//! A sampler on a thread of its own, for live views: it takes samples at the rate asked
//! and sends what it recorded, in small batches, over a channel; the view applies them to its
//! own [`Recording`] and never waits on the target. Controls (pause, the task filter, stop)
//! come back over another channel. The source is one process's [`Sampler`], or a
//! [`FleetSampler`] for a process tree (`top --subprocesses`), which adds and closes
//! processes in the recording as they start and end.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::fleet_sampler::FleetSampler;
use crate::capture::recording::{EndReason, Marks, Recording, RecordingDelta};
use crate::capture::sampler::{SampleError, Sampler};
use crate::capture::task_pane::{TaskPane, TaskTracker};

/// How often a batch is sent (seconds): a live view redraws at most a few times a second.
const BATCH_EVERY: f64 = 0.05;
/// The sampling side forgets task and thread names it has sent and not used for this long
/// (seconds); one seen again is sent again under a new id.
const NAMES_UNUSED_FOR: f64 = 60.0;

/// What the view asks of the sampling thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop taking samples (`true`) or take them again.
    Pause(bool),
    /// Show only tasks whose name contains this, in the task pane.
    Filter(String),
    /// The task pane follows this loop (its index in the recording).
    PaneLoop(u16),
    /// Finish: the thread sends what it has and ends.
    Stop,
}

/// One batch: what the recording gained, the task pane when it was refreshed, and whether
/// the sampler is done (the target exited or ran exec).
#[derive(Debug)]
pub struct Batch {
    pub delta: RecordingDelta,
    pub pane: Option<TaskPane>,
    pub done: bool,
}

/// What the thread samples: one process, or the processes of a tree.
pub enum Source {
    One(Box<Sampler>),
    Tree(Box<FleetSampler>),
}

impl Source {
    fn now(&self) -> f64 {
        match self {
            Source::One(s) => s.now(),
            Source::Tree(f) => f.now(),
        }
    }

    fn sample(&mut self, rec: &mut Recording, budget: f64) -> Result<(), SampleError> {
        match self {
            Source::One(s) => s.sample(rec, budget),
            Source::Tree(f) => f.sample(rec, budget),
        }
    }

    /// The sampler whose tasks the pane shows for the recording's loop `focus`.
    fn pane_sampler(&self, focus: u16) -> Option<&Sampler> {
        match self {
            Source::One(s) => Some(s),
            Source::Tree(f) => f.sampler_of_loop(focus),
        }
    }
}

/// The sampling thread of a live view.
pub struct Collector {
    rx: Receiver<Batch>,
    tx: Sender<Control>,
    handle: Option<JoinHandle<()>>,
}

impl Collector {
    /// Start sampling `sampler`'s target at `rate_hz` into batches; `rec` is the recording
    /// the batches extend (the view keeps its own copy, which starts equal).
    pub fn start(sampler: Sampler, rec: Recording) -> Collector {
        Collector::start_source(Source::One(Box::new(sampler)), rec)
    }

    /// As [`Collector::start`], for any source.
    pub fn start_source(sampler: Source, rec: Recording) -> Collector {
        let (batch_tx, rx) = mpsc::channel();
        let (tx, control_rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("loopspy-sampler".into())
            .spawn(move || run(sampler, rec, batch_tx, control_rx))
            .expect("spawning the sampler thread");
        Collector { rx, tx, handle: Some(handle) }
    }

    pub fn control(&self, c: Control) {
        let _ = self.tx.send(c);
    }

    /// The next batch, waiting at most `timeout`; `None` when none came (or the thread ended).
    pub fn next(&self, timeout: Duration) -> Option<Batch> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// A batch if one is waiting.
    pub fn try_next(&self) -> Option<Batch> {
        self.rx.try_recv().ok()
    }

    /// Stop the thread and return the batches it sent last.
    pub fn stop(mut self) -> Vec<Batch> {
        self.control(Control::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.rx.try_iter().collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.tx.send(Control::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(mut sampler: Source, mut rec: Recording, out: Sender<Batch>, controls: Receiver<Control>) {
    let period = 1.0 / rec.rate_hz;
    // The view's copy starts equal: everything already in `rec` counts as sent.
    let mut marks = Marks::at(&rec);
    let mut tasks = TaskTracker::default();
    let mut filter = String::new();
    let mut focus = 0u16;
    let mut paused = false;
    let mut next = sampler.now();
    let mut last_batch = Instant::now();
    let mut done = false;
    let mut pane: Option<TaskPane> = None;
    loop {
        // Controls first.
        let mut stop = false;
        while let Ok(c) = controls.try_recv() {
            match c {
                Control::Pause(p) => {
                    paused = p;
                    next = sampler.now();
                }
                Control::Filter(f) => {
                    filter = f;
                    // Apply it at the next count, without waiting for the usual time.
                    tasks.counter = Default::default();
                }
                Control::PaneLoop(l) => {
                    if l != focus {
                        // Another process's tasks: nothing of the last one's applies.
                        if matches!(sampler, Source::Tree(_)) {
                            tasks = TaskTracker::default();
                        }
                        focus = l;
                        tasks.counter = Default::default();
                    }
                }
                Control::Stop => stop = true,
            }
        }
        if !done && !paused && !stop {
            let now = sampler.now();
            if now >= next {
                match sampler.sample(&mut rec, 0.5 * period) {
                    Ok(()) | Err(SampleError::Failed) => {}
                    Err(SampleError::Exited) => {
                        rec.end = EndReason::TargetExited;
                        done = true;
                    }
                    Err(SampleError::Exec) => {
                        rec.end = EndReason::TargetExec;
                        done = true;
                    }
                }
                rec.ended = rec.samples.last().map(|s| s.t).unwrap_or(now).max(rec.ended);
                next += period;
                if next < now {
                    next = now + period;
                }
                if let (false, Some(s)) = (done, sampler.pane_sampler(focus)) {
                    tasks.refresh(s, &mut rec, &filter, focus);
                    if tasks.pane.is_some() {
                        pane = tasks.pane.clone();
                    }
                }
            }
        }
        if done || stop || last_batch.elapsed().as_secs_f64() >= BATCH_EVERY {
            last_batch = Instant::now();
            let batch = Batch { delta: rec.take_delta(&mut marks), pane: pane.take(), done };
            // The names sent: those not used for a while need not be held here too.
            let forget = rec.ended - NAMES_UNUSED_FOR;
            rec.tasks.forget_unused_before(forget, crate::capture::recording::KEEP_NAMES);
            rec.threads.forget_unused_before(forget, crate::capture::recording::KEEP_NAMES);
            if out.send(batch).is_err() || stop || done {
                return;
            }
        }
        let wait = if paused { 0.05 } else { (next - sampler.now()).clamp(0.0, 0.01) };
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
}
