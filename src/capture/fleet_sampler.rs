//! Sampling the event loops of a process tree into one recording (`--subprocesses`): one
//! [`Sampler`] per process that runs a loop, each taking its sample in turn at every tick,
//! so each process is sampled at the rate asked. The [`Fleet`] is scanned again twice a
//! second: a process whose loop starts (a worker its master started, or started again) joins
//! the recording as a new process; one that exits or runs `exec()` leaves it (its loops end
//! there; after an `exec()` the new program joins as a new process).
//!
//! Each process's loops are appended to the recording's one loop list and noted in
//! `Recording::loop_process`; the per-process sampler is exactly the one a single-process
//! recording uses, so a sample costs the same.

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

pub struct FleetSampler {
    fleet: Fleet,
    members: Vec<Member>,
    options: SamplerOptions,
    clock_offset: f64,
    last_scan: f64,
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
        let mut s = FleetSampler { fleet, members: Vec::new(), options, clock_offset, last_scan: 0.0, command, first: None };
        let now = s.now();
        s.last_scan = now;
        let mut rec = Recording::new(rate_hz, Vec::new(), now);
        let mut last = None;
        for f in found {
            if let Err(e) = s.join(f, &mut rec, now) {
                last = Some(e);
            }
        }
        if s.members.is_empty() {
            return Err(last.unwrap_or(Failure::TargetExited { pid: s.fleet.root }));
        }
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

    fn join(&mut self, found: Found, rec: &mut Recording, now: f64) -> Result<(), Failure> {
        if rec.processes.len() >= u16::MAX as usize {
            self.fleet.release(found.id);
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
                self.fleet.release(found.id);
                Err(e)
            }
        }
    }

    /// Take one sample of every loop of every process into `rec`, within `budget` seconds of
    /// retries in all; pick up processes whose loop started, close those that ended.
    /// `Exited` once no process is left and the tree is gone.
    pub fn sample(&mut self, rec: &mut Recording, budget: f64) -> Result<(), SampleError> {
        let now = self.now();
        if now - self.last_scan >= SCAN_EVERY {
            self.last_scan = now;
            for f in self.fleet.scan() {
                let _ = self.join(f, rec, now);
            }
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
            self.fleet.release(m.id);
        }
        if self.members.is_empty() && !self.fleet.alive() {
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
