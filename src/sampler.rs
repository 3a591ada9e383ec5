//! Continuous sampling of a process's event loops without stopping it.
//!
//! Everything that can be resolved once is (the loop's `_ready` and `_scheduled` objects, the
//! thread state, the syscall file, the current-task source), so that one sample of one loop
//! costs a read of the thread's `/proc` syscall file, one read per frame of its stack (code
//! objects cached), and a few reads for the ready queue and the earliest timer. Loops that
//! start or stop are picked up by a refresh about once a second.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::callback::{self, running_handle};
use crate::error::Failure;
use crate::eventloop::{self, LoopKind, LoopObjects, LoopReaders};
use crate::frames::{self, StackFrame, StackReader};
use crate::interp::{self, CurrentTaskSource, PyThread};
use crate::loopstate::{self, FrameName};
use crate::metrics::is_busy;
use crate::procfs::{self, Syscall};
use crate::reader;
use crate::recording::{LoopMeta, Recording, Sample, ThreadActivity, ThreadSample};
use crate::target::Target;

/// How often the thread list is re-read for loops that started or stopped (seconds).
const REFRESH_EVERY: f64 = 1.0;

#[derive(Debug, Clone, Copy, Default)]
pub struct SamplerOptions {
    /// Also sample the stacks of threads that run no loop (executor workers...).
    pub all_threads: bool,
}

/// One loop being sampled.
struct SampledLoop {
    meta: u16,
    thread: PyThread,
    addr: u64,
    kind: LoopKind,
    objects: LoopObjects,
    selector: Option<String>,
    syscall: Option<File>,
}

/// Why a sample could not be taken.
#[derive(Debug)]
pub enum SampleError {
    /// The target is gone: stop.
    Exited,
    /// This attempt read inconsistent data (counted, not shown).
    Torn(String),
}

pub struct Sampler {
    pub target: Target,
    loops: Vec<SampledLoop>,
    readers: LoopReaders,
    stacks: StackReader,
    tasks: CurrentTaskSource,
    task_names: HashMap<u64, u32>,
    clock_offset: f64,
    options: SamplerOptions,
    others: Vec<PyThread>,
    last_refresh: f64,
    /// The class of the last loop found that loopspy cannot read.
    unsupported: Option<String>,
    frame_refs: Vec<frames::FrameRef>,
    stack: Vec<StackFrame>,
}

fn open_syscall(pid: i32, tid: Option<i32>) -> Option<File> {
    File::open(format!("/proc/{pid}/task/{}/syscall", tid?)).ok()
}

fn read_syscall(file: &Option<File>) -> Option<Syscall> {
    let f = file.as_ref()?;
    let mut buf = [0u8; 256];
    let n = f.read_at(&mut buf, 0).ok()?;
    procfs::parse_syscall(&buf[..n]).ok()
}

impl Sampler {
    /// Find the process's loops and get ready to sample them. The recording's loop list is
    /// returned for [`Recording::new`].
    pub fn start(target: Target, options: SamplerOptions) -> Result<(Sampler, Vec<LoopMeta>), Failure> {
        let clock_offset = procfs::monotonic_offset(target.pid);
        let mut sampler = Sampler {
            tasks: CurrentTaskSource::None,
            target,
            loops: Vec::new(),
            readers: LoopReaders::new(),
            stacks: StackReader::new(),
            task_names: HashMap::new(),
            clock_offset,
            options,
            others: Vec::new(),
            last_refresh: 0.0,
            unsupported: None,
            frame_refs: Vec::new(),
            stack: Vec::new(),
        };
        let mut metas = Vec::new();
        let mut last = None;
        for _ in 0..crate::snapshot::READ_ATTEMPTS {
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
                    metas.clear();
                    sampler.loops.clear();
                }
            }
        }
        if let Some(f) = last {
            return Err(f);
        }
        if sampler.loops.is_empty() {
            if let Some(class) = sampler.unsupported.take() {
                return Err(Failure::UnsupportedLoop { pid: sampler.target.pid, class });
            }
            let view = crate::snapshot::Looker::new().look(&mut sampler.target)?;
            return Err(Failure::NoEventLoop { pid: sampler.target.pid, threads: view.threads });
        }
        Ok((sampler, metas))
    }

    /// Walk the threads; start sampling loops not seen before, drop loops that stopped.
    /// New loops are appended to `metas`.
    fn discover(&mut self, metas: &mut Vec<LoopMeta>) -> reader::Result<()> {
        let pid = self.target.pid;
        let r = &self.target.reader;
        let tids = procfs::tids(pid).unwrap_or_default();
        let threads = interp::threads(r, self.target.interp, &tids)?;
        let names: HashMap<u64, String> = interp::thread_names(r, self.target.interp).unwrap_or_default().into_iter().collect();
        self.loops.retain(|l| threads.iter().any(|t| t.tstate == l.thread.tstate && t.running_loop == Some(l.addr)));
        self.others.clear();
        for t in threads {
            let Some(addr) = t.running_loop else {
                self.others.push(t);
                continue;
            };
            if self.loops.iter().any(|l| l.addr == addr && l.thread.tstate == t.tstate) {
                continue;
            }
            let (kind, class) = eventloop::kind_of(r, addr)?;
            let Some(kind) = kind else {
                // A loop class loopspy cannot read (or a stale pointer read mid-change): not
                // sampled. `start` reports it when no loop can be sampled at all.
                self.unsupported = Some(class);
                continue;
            };
            let objects = self.readers.resolve(r, kind, addr)?;
            let selector = match objects {
                LoopObjects::Selector(o) => o.selector.map(|s| r.type_name(s)).transpose()?,
                LoopObjects::Uvloop(_) => None,
            };
            let meta = metas.len() as u16;
            metas.push(LoopMeta {
                native_id: t.native_id,
                thread_name: names.get(&t.ident).cloned(),
                loop_class: class,
                loop_kind: kind,
                selector: selector.clone(),
            });
            let syscall = open_syscall(pid, t.native_id);
            self.loops.push(SampledLoop { meta, thread: t, addr, kind, objects, selector, syscall });
        }
        self.tasks = CurrentTaskSource::resolve(r, self.target.interp)?;
        self.task_names.clear();
        Ok(())
    }

    pub fn now(&self) -> f64 {
        procfs::monotonic_now() + self.clock_offset
    }

    /// The loops being sampled: `(index in the recording's loops, loop object address)`.
    pub fn loop_addresses(&self) -> Vec<(u16, u64)> {
        self.loops.iter().map(|l| (l.meta, l.addr)).collect()
    }

    /// The task running now on the recording's loop `meta`, if any.
    pub fn current_task(&self, meta: u16) -> Option<u64> {
        let l = self.loops.iter().find(|l| l.meta == meta)?;
        self.tasks.task(&self.target.reader, &l.thread, l.addr).ok().flatten()
    }

    /// Take one sample of every loop into `rec`. A torn read is retried once, then counted.
    pub fn sample(&mut self, rec: &mut Recording) -> Result<(), SampleError> {
        let now = self.now();
        if now - self.last_refresh >= REFRESH_EVERY {
            self.last_refresh = now;
            let mut metas = rec.loops.clone();
            match self.discover(&mut metas) {
                Ok(()) => rec.loops = metas,
                Err(e) => return Err(self.classify(e)),
            }
        }
        let mut result = self.sample_once(rec);
        if let Err(SampleError::Torn(_)) = result {
            result = self.sample_once(rec);
        }
        if let Err(SampleError::Torn(_)) = &result {
            rec.failed_samples += 1;
        }
        result
    }

    fn classify(&self, e: reader::Error) -> SampleError {
        if e.is_gone() || procfs::is_dead(self.target.pid) {
            SampleError::Exited
        } else {
            SampleError::Torn(e.to_string())
        }
    }

    fn sample_once(&mut self, rec: &mut Recording) -> Result<(), SampleError> {
        // The kernel's view first: a ptrace stop would hide the syscall.
        let syscalls: Vec<Option<Syscall>> = self.loops.iter().map(|l| read_syscall(&l.syscall)).collect();
        let _lock = if self.target.options.blocking {
            let lock = self.target.spy.process.lock().map_err(|e| {
                if procfs::is_dead(self.target.pid) {
                    SampleError::Exited
                } else {
                    SampleError::Torn(format!("could not pause the target: {e}"))
                }
            })?;
            Some(lock)
        } else {
            None
        };
        // Each loop on its own: one that stopped (closed, its thread gone) is dropped, one
        // whose read was torn is counted, and neither spoils the others' samples.
        let mut batch = Vec::with_capacity(self.loops.len());
        let mut ended = Vec::new();
        let mut torn = None;
        for (i, syscall) in syscalls.into_iter().enumerate() {
            match self.sample_loop(i, syscall, rec) {
                Ok(s) => batch.push(s),
                Err(e) => match self.classify(e) {
                    SampleError::Exited => return Err(SampleError::Exited),
                    e if !self.still_running(i) => {
                        let _ = e;
                        ended.push(i);
                    }
                    e => {
                        torn.get_or_insert(e);
                    }
                },
            }
        }
        for i in ended.into_iter().rev() {
            self.loops.remove(i);
        }
        if batch.is_empty() {
            if let Some(e) = torn {
                return Err(e);
            }
        } else if torn.is_some() {
            rec.failed_samples += 1;
        }
        if self.options.all_threads {
            let t = self.now();
            for thread in self.others.clone() {
                // A short-lived thread may be gone already: skip it.
                let Ok(stack) = self.stacks.stack(&self.target.reader, thread.tstate) else { continue };
                let name = format!("thread {}", thread.native_id.map(|n| n.to_string()).unwrap_or_else(|| format!("{:#x}", thread.ident)));
                let thread_id = rec.threads.intern(name);
                let stack = rec.intern_stack(&stack);
                rec.other_threads.push(ThreadSample { t, thread: thread_id, stack });
            }
        }
        rec.samples.extend(batch);
        Ok(())
    }

    /// Does loop `i`'s thread still run it?
    fn still_running(&self, i: usize) -> bool {
        let l = &self.loops[i];
        matches!(interp::running_loop(&self.target.reader, l.thread.tstate), Ok(Some(addr)) if addr == l.addr)
    }

    fn sample_loop(&mut self, i: usize, syscall: Option<Syscall>, rec: &mut Recording) -> reader::Result<Sample> {
        // Buffers reused from sample to sample.
        let (mut frame_refs, mut stack) = (std::mem::take(&mut self.frame_refs), std::mem::take(&mut self.stack));
        let result = self.sample_loop_with(i, syscall, rec, &mut frame_refs, &mut stack);
        (self.frame_refs, self.stack) = (frame_refs, stack);
        result
    }

    fn sample_loop_with(
        &mut self,
        i: usize,
        syscall: Option<Syscall>,
        rec: &mut Recording,
        frame_refs: &mut Vec<frames::FrameRef>,
        stack: &mut Vec<StackFrame>,
    ) -> reader::Result<Sample> {
        let r = &self.target.reader;
        let l = &self.loops[i];
        self.stacks.sample_stack(r, l.thread.tstate, frame_refs, stack)?;
        let figures = self.readers.quick(r, &l.objects)?;
        let t = self.now();
        let names: Vec<FrameName> = stack.iter().map(|f| FrameName { function: &f.function, file: &f.file }).collect();
        let state = loopstate::classify(l.kind, &names, syscall, l.selector.as_deref());
        let (callback, task) = if is_busy(state) { self.busy_identity(i, frame_refs, rec)? } else { (None, None) };
        let l = &self.loops[i];
        Ok(Sample {
            t,
            loop_index: l.meta,
            state,
            activity: ThreadActivity::from_syscall(syscall),
            ready: figures.ready.min(u32::MAX as u64) as u32,
            lateness: figures.earliest_timer.map(|w| (t - w) as f32),
            stack: rec.intern_stack(stack),
            callback,
            task,
            busy_for: figures.loop_time.filter(|_| is_busy(state)).map(|lt| (t - lt).max(0.0) as f32),
        })
    }

    /// Which callback is running (an identity to tell callbacks apart) and its task's name.
    fn busy_identity(&mut self, i: usize, frame_refs: &[frames::FrameRef], rec: &mut Recording) -> reader::Result<(Option<u64>, Option<u32>)> {
        let r = &self.target.reader;
        let l = &self.loops[i];
        let task = self.tasks.task(r, &l.thread, l.addr)?;
        let callback = match l.kind {
            LoopKind::Selector => running_handle(r, &mut self.stacks, frame_refs)?,
            // uvloop: the task, or the frame C entered for a plain callback.
            LoopKind::Uvloop => task.or_else(|| {
                frame_refs.iter().rev().skip(1).rev().find(|f| f.entered_from_c == Some(true)).map(|f| f.addr)
            }),
        };
        let task_name = match task {
            None => None,
            Some(addr) => Some(match self.task_names.get(&addr) {
                Some(id) => *id,
                None => {
                    let id = rec.tasks.intern(callback::task_name(r, addr)?);
                    self.task_names.insert(addr, id);
                    id
                }
            }),
        };
        Ok((callback, task_name))
    }
}
