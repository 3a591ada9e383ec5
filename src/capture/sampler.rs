//! Continuous sampling of a process's event loops without stopping it.
//!
//! Each loop has a [`LoopProbe`] (the per-loop code `dump` uses too). A look that fails is
//! retried while the sample's time budget lasts, then recorded as a failure with its reason,
//! never as data. Loops that start or stop are picked up by a refresh about once a second,
//! and at once when a loop is seen to end.

use std::collections::HashMap;
use std::time::Instant;

use crate::asyncio::eventloop::LoopReaders;
use crate::base::error::Failure;
use crate::capture::probe::{Kernel, LookFailure, LoopProbe, LoopSample};
use crate::capture::recording::{FailedSample, LoopMeta, Recording, Sample, ThreadActivity, ThreadSample};
use crate::process::procfs;
use crate::python::frames::StackReader;
use crate::python::interp::{self, CurrentTaskSource, PyThread};
use crate::python::reader;
use crate::python::target::Target;

/// How often the thread list is re-read for loops that started or stopped (seconds).
const REFRESH_EVERY: f64 = 1.0;
/// Looks at a loop per sample before a failure is recorded.
const ATTEMPTS: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
pub struct SamplerOptions {
    /// Also sample the stacks of threads that run no loop (executor workers...).
    pub all_threads: bool,
}

/// Why a sample could not be taken.
#[derive(Debug)]
pub enum SampleError {
    /// The target is gone: stop.
    Exited,
    /// Every look failed (counted in the recording, not shown).
    Failed,
    /// The target ran `exec()`: another program now runs under its PID.
    Exec,
}

pub struct Sampler {
    pub target: Target,
    probes: Vec<(u16, LoopProbe)>,
    readers: LoopReaders,
    stacks: StackReader,
    tasks: CurrentTaskSource,
    clock_offset: f64,
    options: SamplerOptions,
    others: Vec<PyThread>,
    /// `threading.Thread.name` of the threads that run no loop, by ident (`--all-threads`).
    other_names: HashMap<u64, String>,
    last_refresh: f64,
    /// The class of the last loop found that loopspy cannot read.
    unsupported: Option<String>,
    /// The recording's loops this sampler has found (indices in `Recording::loops`): a
    /// thread's next loop continues one of these. All of them when it samples the only process.
    own: Vec<u16>,
    /// Put before the names of threads that run no loop (`--all-threads`): with several
    /// processes in one recording, whose thread it is.
    pub thread_prefix: String,
}

impl Sampler {
    /// Find the process's loops and get ready to sample them. The recording's loop list is
    /// returned for [`Recording::new`].
    pub fn start(target: Target, options: SamplerOptions) -> Result<(Sampler, Vec<LoopMeta>), Failure> {
        Self::start_after(target, options, Vec::new())
    }

    /// Find the process's loops and sample them into `rec`, which already holds other
    /// processes' loops (`--subprocesses`): this process's loops are appended to `rec.loops`.
    /// Returns the indices of the new loops.
    pub fn join(target: Target, options: SamplerOptions, rec: &mut Recording) -> Result<(Sampler, Vec<u16>), Failure> {
        let first = rec.loops.len();
        let (sampler, metas) = Self::start_after(target, options, rec.loops.clone())?;
        rec.loops = metas;
        Ok((sampler, (first as u16..rec.loops.len() as u16).collect()))
    }

    fn start_after(target: Target, options: SamplerOptions, known: Vec<LoopMeta>) -> Result<(Sampler, Vec<LoopMeta>), Failure> {
        let clock_offset = procfs::monotonic_offset(target.pid);
        let mut sampler = Sampler {
            tasks: CurrentTaskSource::None,
            target,
            probes: Vec::new(),
            readers: LoopReaders::new(),
            stacks: StackReader::new(),
            clock_offset,
            options,
            others: Vec::new(),
            other_names: HashMap::new(),
            last_refresh: 0.0,
            unsupported: None,
            own: Vec::new(),
            thread_prefix: String::new(),
        };
        let before = known.len();
        let mut metas = known;
        let mut last = None;
        for _ in 0..crate::capture::snapshot::READ_ATTEMPTS {
            match sampler.discover(&mut metas) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => {
                    let f = sampler.target.explain(&e);
                    if !matches!(f, Failure::Unreadable { .. }) {
                        return Err(f);
                    }
                    last = Some(f);
                    metas.truncate(before);
                    sampler.probes.clear();
                    sampler.own.clear();
                }
            }
        }
        if let Some(f) = last {
            return Err(f);
        }
        if sampler.probes.is_empty() {
            if let Some(class) = sampler.unsupported.take() {
                return Err(Failure::UnsupportedLoop { pid: sampler.target.pid, class });
            }
            let view = crate::capture::snapshot::Looker::new().look(&mut sampler.target)?;
            return Err(Failure::NoEventLoop { pid: sampler.target.pid, threads: view.threads, below: Vec::new() });
        }
        sampler.last_refresh = sampler.now();
        Ok((sampler, metas))
    }

    /// The recording's loops this sampler found (indices in `Recording::loops`).
    pub fn loops(&self) -> &[u16] {
        &self.own
    }

    /// Walk the threads; start probing loops not seen before, drop loops that stopped. New
    /// loops are appended to `metas`.
    fn discover(&mut self, metas: &mut Vec<LoopMeta>) -> reader::Result<()> {
        let pid = self.target.pid;
        let tids = procfs::task_ids(pid).unwrap_or_default();
        let mut threads = interp::threads(&self.target.reader, self.target.interp, &tids)?;
        if threads.iter().any(|t| t.running_loop.is_some()) && self.target.resolve_asyncio_late() {
            // Read with the interpreter's own asyncio offsets from now on.
            self.probes.clear();
            threads = interp::threads(&self.target.reader, self.target.interp, &tids)?;
        }
        let r = &self.target.reader;
        let names: HashMap<u64, String> = interp::thread_names(r, self.target.interp).unwrap_or_default().into_iter().collect();
        self.probes.retain(|(_, p)| threads.iter().any(|t| t.tstate == p.thread.tstate && t.running_loop == Some(p.addr)));
        self.others.clear();
        self.other_names.clear();
        for t in threads {
            let Some(addr) = t.running_loop else {
                if let Some(name) = names.get(&t.ident) {
                    self.other_names.insert(t.ident, name.clone());
                }
                self.others.push(t);
                continue;
            };
            if self.probes.iter().any(|(_, p)| p.addr == addr && p.thread.tstate == t.tstate) {
                continue;
            }
            let name = names.get(&t.ident).cloned();
            let probe = match LoopProbe::new(pid, r, &mut self.readers, t, addr)? {
                Ok(p) => p,
                Err(class) => {
                    // A loop class loopspy cannot read (or a stale pointer read mid-change):
                    // not sampled. `start` reports it when no loop can be sampled at all.
                    self.unsupported = Some(class);
                    continue;
                }
            };
            let selector = match &probe.objects {
                crate::asyncio::eventloop::LoopObjects::Selector(o) => o.selector.map(|s| r.type_name(s)).transpose()?,
                crate::asyncio::eventloop::LoopObjects::Uvloop(_) => None,
            };
            // A thread's next loop (it ran `asyncio.run()` again) continues its timeline.
            let same = self.own.iter().copied().find(|i| {
                let m: &LoopMeta = &metas[*i as usize];
                m.native_id == probe.thread.native_id && m.loop_class == probe.class_name
            });
            let meta = match same {
                Some(i) => i,
                // Indices are u16: a recording of 65,535 loops (workers restarted all day)
                // samples no new ones.
                None if metas.len() >= u16::MAX as usize => continue,
                None => {
                    metas.push(LoopMeta {
                        native_id: probe.thread.native_id,
                        thread_name: name,
                        loop_class: probe.class_name.clone(),
                        loop_kind: probe.kind,
                        selector,
                        found: Some(self.now()),
                    });
                    self.own.push((metas.len() - 1) as u16);
                    (metas.len() - 1) as u16
                }
            };
            self.probes.push((meta, probe));
        }
        self.tasks = CurrentTaskSource::resolve(r, self.target.interp)?;
        Ok(())
    }

    pub fn now(&self) -> f64 {
        procfs::monotonic_now() + self.clock_offset
    }

    /// The loops being sampled: `(index in the recording's loops, loop object address)`.
    pub fn loop_addresses(&self) -> Vec<(u16, u64)> {
        self.probes.iter().map(|(m, p)| (*m, p.addr)).collect()
    }

    /// The task running now on the recording's loop `meta`, if any.
    pub fn current_task(&self, meta: u16) -> Option<u64> {
        let (_, p) = self.probes.iter().find(|(m, _)| *m == meta)?;
        self.tasks.task(&self.target.reader, &p.thread, p.addr).ok().flatten()
    }

    /// Take one sample of every loop into `rec`, within `budget` seconds of retries.
    pub fn sample(&mut self, rec: &mut Recording, budget: f64) -> Result<(), SampleError> {
        let now = self.now();
        if now - self.last_refresh >= REFRESH_EVERY || self.probes.is_empty() {
            self.last_refresh = now;
            if self.target.exec_happened() {
                return Err(SampleError::Exec);
            }
            let mut metas = rec.loops.clone();
            match self.discover(&mut metas) {
                Ok(()) => rec.loops = metas,
                Err(e) if e.is_gone() || procfs::is_dead(self.target.pid) => return Err(SampleError::Exited),
                Err(_) => {} // the next refresh tries again
            }
        }
        // The kernel's view of every loop thread first: a ptrace stop would hide it.
        let kernels: Vec<Kernel> = self.probes.iter().map(|(_, p)| p.kernel()).collect();
        // A stopped process cannot be paused (it would be waited for): read it as it is.
        let stopped = kernels.iter().any(|k| crate::asyncio::loopstate::stopped(k.sched));
        let paused_at = Instant::now();
        let lock = if self.target.options.blocking && !stopped {
            match self.target.process.lock() {
                Ok(lock) => Some(lock),
                Err(_) if procfs::is_dead(self.target.pid) => return Err(SampleError::Exited),
                Err(_) => None,
            }
        } else {
            None
        };
        let started = Instant::now();
        let mut any = false;
        let mut gone = Vec::new();
        for (i, kernel) in kernels.into_iter().enumerate() {
            let mut outcome = self.look(i, kernel);
            let mut attempts = 1;
            while matches!(outcome, Err(LookFailure::Failed(..))) && attempts < ATTEMPTS && started.elapsed().as_secs_f64() < budget {
                outcome = self.look(i, kernel);
                attempts += 1;
            }
            let meta = self.probes[i].0;
            match outcome {
                Ok(s) => {
                    any = true;
                    let sample = self.record_sample(rec, meta, &s);
                    rec.samples.push(sample);
                }
                Err(LookFailure::Failed(reason, detail)) => {
                    if std::env::var_os("LOOPSPY_DEBUG_FAILURES").is_some() {
                        eprintln!("loopspy: failed look ({}): {}", reason.as_str(), crate::base::escape::terminal(&detail));
                    }
                    rec.failures.push(FailedSample { t: self.now(), loop_index: meta, reason })
                }
                Err(LookFailure::LoopGone) => gone.push(i),
                Err(LookFailure::Exited) => return Err(SampleError::Exited),
            }
        }
        if lock.is_some() {
            drop(lock);
            rec.paused += paused_at.elapsed().as_secs_f64();
        }
        if !gone.is_empty() {
            for i in gone.into_iter().rev() {
                self.probes.remove(i);
            }
            // A loop ended: look for the one that may replace it at the next sample.
            self.last_refresh = f64::MIN;
        }
        if self.options.all_threads {
            let t = self.now();
            for thread in self.others.clone() {
                // A short-lived thread may be gone already, a walk may be cut: skip it.
                let Ok(stack) = self.stacks.stack(&self.target.reader, thread.tstate) else { continue };
                // Its Python name first (`asyncio_0`, `ThreadPoolExecutor-0_3`), then its id:
                // names need not be unique.
                let id = thread.native_id.map(|n| n.to_string()).unwrap_or_else(|| format!("{:#x}", thread.ident));
                let name = match self.other_names.get(&thread.ident) {
                    Some(n) => format!("{}{n} (thread {id})", self.thread_prefix),
                    None => format!("{}thread {id}", self.thread_prefix),
                };
                let thread_id = rec.threads.intern_at(name, t);
                let stack = rec.intern_stack(&stack);
                rec.other_threads.push(ThreadSample { t, thread: thread_id, stack });
            }
        }
        if any || self.probes.is_empty() {
            Ok(())
        } else if self.target.exec_happened() {
            Err(SampleError::Exec)
        } else {
            Err(SampleError::Failed)
        }
    }

    fn look(&mut self, i: usize, kernel: Kernel) -> Result<LoopSample, LookFailure> {
        let r = &self.target.reader;
        self.probes[i].1.look(r, &mut self.readers, &mut self.stacks, &self.tasks, self.clock_offset, kernel)
    }

    fn record_sample(&mut self, rec: &mut Recording, meta: u16, s: &LoopSample) -> Sample {
        let task = s.task_name.as_ref().map(|n| rec.tasks.intern_at(n.clone(), s.t));
        Sample {
            t: s.t,
            loop_index: meta,
            state: s.state,
            activity: ThreadActivity::from_syscall(s.syscall),
            ready: s.figures.ready.min(u32::MAX as u64) as u32,
            lateness: if s.figures.timers_known { s.lateness().map(|l| l as f32) } else { Some(Sample::LAG_UNKNOWN) },
            // A collection shows above the code it interrupted.
            stack: if s.gc.collecting() {
                rec.intern_stack(&crate::python::gc::with_gc_frame(&s.frames))
            } else {
                rec.intern_stack(&s.frames)
            },
            loop_frames: s.loop_frames.min(u16::MAX as usize) as u16,
            callback: s.callback,
            task,
            busy_for: s.busy_for.map(|b| b as f32),
            gc: s.gc,
        }
    }
}
