//! Sampling the event loops of a process tree into one recording (`--subprocesses`): one
//! [`Sampler`] per process that runs a loop, each taking its sample in turn at every tick,
//! so each process is sampled at the rate asked. The [`Fleet`] is scanned again twice a
//! second, on a thread of its own (attaching to a new process reads its binary and can take a
//! few hundred milliseconds: the workers being sampled must not wait for it): a process whose
//! loop starts (a worker its master started, or started again) joins the recording as a new
//! process at the next sample; one that exits or runs `exec()` leaves it (its loops end there;
//! after an `exec()` the new program joins as a new process).
//!
//! Each process's loops are appended to the recording's one loop list and noted in
//! `Recording::loop_process`; the per-process sampler is exactly the one a single-process
//! recording uses, so a sample costs the same.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::base::error::Failure;
use crate::capture::fleet::{Fleet, Found};
use crate::capture::recording::{ProcessEnd, ProcessMeta, Recording};
use crate::capture::sampler::{SampleError, Sampler, SamplerOptions};
use crate::capture::task_counter::TaskCounter;
use crate::process::procfs::{self, Identity};
use crate::python::published::LayoutCheck;

/// How often the tree is looked at again for processes whose loop started (seconds).
pub const SCAN_EVERY: f64 = 0.5;

/// Turns a process's argv into the command line recorded (shortened, secrets redacted).
pub type ShowCommand = Box<dyn Fn(&[String]) -> Vec<String> + Send>;

struct Member {
    /// Index in `Recording::processes`.
    process: u16,
    id: Identity,
    sampler: Sampler,
    tasks: TaskCounter,
}

/// The thread that scans the tree: it owns the [`Fleet`], sends the processes whose loop
/// started, and forgets those the sampler lets go.
struct Scanner {
    found: Receiver<Found>,
    release: Sender<Identity>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Scanner {
    fn start(mut fleet: Fleet) -> Scanner {
        let (found_tx, found) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<Identity>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = std::thread::Builder::new()
            .name("loopspy-scanner".into())
            .spawn(move || {
                let tick = Duration::from_millis(25);
                let mut waited = Duration::ZERO;
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    waited += tick;
                    if waited.as_secs_f64() < SCAN_EVERY {
                        continue;
                    }
                    waited = Duration::ZERO;
                    for id in release_rx.try_iter() {
                        fleet.release(id);
                    }
                    for f in fleet.scan() {
                        if found_tx.send(f).is_err() {
                            return;
                        }
                    }
                }
            })
            .expect("spawning the scanner thread");
        Scanner { found, release, stop, handle: Some(handle) }
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub struct FleetSampler {
    root: i32,
    scanner: Option<Scanner>,
    /// The tree before the scanner takes it (during [`FleetSampler::start`]).
    fleet: Option<Fleet>,
    members: Vec<Member>,
    options: SamplerOptions,
    clock_offset: f64,
    command: ShowCommand,
    /// The Python version and layout of the first process recorded (the report's target).
    pub first: Option<(String, LayoutCheck)>,
}

impl FleetSampler {
    /// Start sampling the processes found (at least one must join); returns the recording
    /// they are sampled into, started now.
    pub fn start(
        fleet: Fleet,
        found: Vec<Found>,
        options: SamplerOptions,
        rate_hz: f64,
        command: ShowCommand,
    ) -> Result<(FleetSampler, Recording), Failure> {
        let clock_offset = procfs::monotonic_offset(fleet.root);
        let root = fleet.root;
        let mut s =
            FleetSampler { root, scanner: None, fleet: Some(fleet), members: Vec::new(), options, clock_offset, command, first: None };
        let now = s.now();
        let mut rec = Recording::new(rate_hz, Vec::new(), now);
        let mut last = None;
        for f in found {
            if let Err(e) = s.join(f, &mut rec, now) {
                last = Some(e);
            }
        }
        if s.members.is_empty() {
            return Err(last.unwrap_or(Failure::TargetExited { pid: root }));
        }
        s.scanner = s.fleet.take().map(Scanner::start);
        Ok((s, rec))
    }

    /// Our `CLOCK_MONOTONIC` in the parent's clock (its time namespace).
    pub fn now(&self) -> f64 {
        procfs::monotonic_now() + self.clock_offset
    }

    /// The processes being sampled now.
    pub fn live(&self) -> usize {
        self.members.len()
    }

    /// The sampler of the process that runs the recording's loop `loop_index` (while it is
    /// sampled), else the first process sampled.
    pub fn sampler_of_loop(&self, loop_index: u16) -> Option<&Sampler> {
        self.members
            .iter()
            .find(|m| m.sampler.loop_addresses().iter().any(|(l, _)| *l == loop_index))
            .or(self.members.first())
            .map(|m| &m.sampler)
    }

    /// Let the tree forget a process (it is attached again if it is still there at a scan).
    fn release(&mut self, id: Identity) {
        if let Some(f) = self.fleet.as_mut() {
            f.release(id);
        }
        if let Some(s) = &self.scanner {
            let _ = s.release.send(id);
        }
    }

    fn join(&mut self, found: Found, rec: &mut Recording, now: f64) -> Result<(), Failure> {
        if rec.processes.len() >= u16::MAX as usize {
            self.release(found.id);
            return Ok(());
        }
        let pid = found.id.pid;
        let argv = procfs::cmdline(pid).unwrap_or_default();
        let python = found.target.version_text.clone();
        let layout = found.target.layout_check.clone();
        match Sampler::join(found.target, self.options, rec) {
            Ok((mut sampler, _)) => {
                sampler.thread_prefix = format!("PID {pid} ");
                let process = rec.processes.len() as u16;
                rec.processes.push(ProcessMeta {
                    pid,
                    parent_pid: found.parent_pid,
                    command: (self.command)(&argv),
                    python: python.clone(),
                    joined: now,
                    left: None,
                    end: None,
                });
                claim(rec, process);
                self.first.get_or_insert((python, layout));
                self.members.push(Member { process, id: found.id, sampler, tasks: TaskCounter::new() });
                Ok(())
            }
            Err(e) => {
                // Its loop ended before it could be sampled (or it exited): looked at again
                // at the next scan if it is still there.
                self.release(found.id);
                Err(e)
            }
        }
    }

    /// Take one sample of every loop of every process into `rec`, within `budget` seconds of
    /// retries in all; pick up processes whose loop started, close those that ended.
    /// `Exited` once no process is left and the tree is gone.
    pub fn sample(&mut self, rec: &mut Recording, budget: f64) -> Result<(), SampleError> {
        let now = self.now();
        let new: Vec<Found> = self.scanner.as_ref().map(|s| s.found.try_iter().collect()).unwrap_or_default();
        for f in new {
            let _ = self.join(f, rec, now);
        }
        let share = budget / self.members.len().max(1) as f64;
        let mut i = 0;
        while i < self.members.len() {
            let m = &mut self.members[i];
            let result = m.sampler.sample(rec, share);
            // The loops (and threads) it found are its process's.
            claim(rec, m.process);
            let end = match result {
                Ok(()) | Err(SampleError::Failed) => {
                    i += 1;
                    continue;
                }
                Err(SampleError::Exited) => ProcessEnd::Exited,
                Err(SampleError::Exec) => ProcessEnd::Exec,
            };
            let m = self.members.remove(i);
            let p = &mut rec.processes[m.process as usize];
            p.left = Some(self.now().max(p.joined));
            p.end = Some(end);
            // After an exec the new program is another process, attached again at a scan.
            self.release(m.id);
        }
        if self.members.is_empty() && !crate::capture::fleet::tree_alive(self.root) {
            return Err(SampleError::Exited);
        }
        Ok(())
    }

    /// Count the tasks of the processes whose count is due (about once a second each).
    pub fn count_tasks(&mut self, now: f64, rec: &mut Recording) {
        for m in &mut self.members {
            if m.tasks.due(now) {
                let loops = m.sampler.loop_addresses();
                // A failed count is skipped; the next one comes at the usual time.
                let _ = m.tasks.count(&m.sampler.target, &loops, now, rec);
                // The executor's worker names interned by the count are this process's.
                claim(rec, m.process);
            }
        }
    }
}

/// Loops and thread names added to `rec` since the last claim belong to `process`.
fn claim(rec: &mut Recording, process: u16) {
    let (loops, threads) = (rec.loops.len(), rec.threads.len());
    rec.loop_process.resize(loops, process);
    rec.thread_process.resize(threads, process);
}
