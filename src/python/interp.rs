//! The interpreter's threads, their OS thread ids, names and running event loops, and the
//! modules table.
//!
//! Reads only `PyInterpreterState` / `PyThreadState` and the few objects hanging off them,
//! through the object reader and the version's layout row.

use std::collections::HashSet;

use crate::process::memory::Memory;
use crate::process::procfs::TaskId;
use crate::python::layout::{CurrentTask, RunningLoop, RUNNING_LOOP_KEY};
use crate::python::reader::{limits, Check, Error, ObjectReader, Result, Watch};

/// Most thread states walked before we call the list corrupt.
pub const MAX_THREADS: usize = 4096;

/// Offsets of the kernel thread id (`tid`, an i32) inside glibc's `struct pthread`
/// (`pthread_t` is its address). 720 holds for glibc 2.2x–2.4x on x86_64; a short scan is the
/// fallback for other C libraries.
const PTHREAD_TID_OFFSETS: &[u64] = &[720];
const PTHREAD_TID_SCAN: u64 = 2048;

/// One Python thread state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyThread {
    pub tstate: u64,
    /// `threading.get_ident()`: the `pthread_t`.
    pub ident: u64,
    /// The OS thread id as the target sees it (`threading.get_native_id()`: in its own PID
    /// namespace), when it could be established.
    pub native_id: Option<i32>,
    /// The same thread's id in loopspy's PID namespace (its `/proc/PID/task/TID`): equal to
    /// `native_id` unless the target runs in a PID namespace of its own.
    pub host_tid: Option<i32>,
    /// The loop object set by `asyncio._set_running_loop` in this thread.
    pub running_loop: Option<u64>,
}

/// Walk the thread states of the interpreter at `interp`.
///
/// `tasks` are the threads the kernel lists for the process (`procfs::task_ids`): they confirm
/// the OS thread id found for each Python thread (3.8–3.10 have no `native_thread_id`) and map
/// it, an id in the target's PID namespace, to ours.
pub fn threads<M: Memory>(r: &ObjectReader<M>, interp: u64, tasks: &[TaskId]) -> Result<Vec<PyThread>> {
    let l = r.layout();
    let ns_tids: Vec<i32> = tasks.iter().map(|t| t.ns_tid).collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut ts = r.ptr(interp + l.interp.threads_head)?;
    while ts != 0 {
        if !seen.insert(ts) || out.len() >= MAX_THREADS {
            return Err(Error::invalid(ts, "thread state list loops or is too long"));
        }
        // A thread state freed while the list was walked (a thread ending) may have left a
        // `next` that leads into the allocator's memory: every state names its interpreter.
        if r.ptr(ts + l.thread.interp)? != interp {
            return Err(Error::invalid(ts, "a thread state of the list is not this interpreter's: the list changed while read"));
        }
        let ident = r.u64(ts + l.thread.thread_id)?;
        let native_id = match l.thread.native_thread_id {
            Some(off) => {
                let tid = r.i64(ts + off)?;
                i32::try_from(tid).ok().filter(|t| *t > 0)
            }
            None => tid_from_pthread(r, ident, &ns_tids),
        };
        let host_tid = native_id.and_then(|n| tasks.iter().find(|t| t.ns_tid == n)).map(|t| t.tid);
        // Unreadable is not "no loop": the caller reads the list again.
        let running_loop = running_loop(r, ts)?;
        out.push(PyThread { tstate: ts, ident, native_id, host_tid, running_loop });
        ts = r.ptr(ts + l.thread.next)?;
    }
    Ok(out)
}

/// The running loop recorded in a thread state, if any.
pub fn running_loop<M: Memory>(r: &ObjectReader<M>, tstate: u64) -> Result<Option<u64>> {
    let l = r.layout();
    let found = match l.thread.running_loop {
        RunningLoop::Field { offset } => r.ptr(tstate + offset)?,
        RunningLoop::InDict | RunningLoop::HolderInDict { .. } => {
            let dict = r.ptr(tstate + l.thread.dict)?;
            if dict == 0 {
                return Ok(None);
            }
            let Some(value) = r.dict_get_str(dict, RUNNING_LOOP_KEY)? else { return Ok(None) };
            match l.thread.running_loop {
                RunningLoop::HolderInDict { holder_loop, holder_pid } => {
                    if r.type_name(value)? != "_RunningLoopHolder" {
                        return Err(Error::invalid(value, "running-loop holder has the wrong type"));
                    }
                    // A holder set by another process: this one was forked from a thread
                    // running a loop and kept its parent's holder (asyncio itself ignores it).
                    if r.own_pid().is_some_and(|own| r.i32(value + holder_pid).ok() != Some(own)) {
                        return Ok(None);
                    }
                    r.ptr(value + holder_loop)?
                }
                _ => value,
            }
        }
    };
    if found == 0 || r.is_none(found)? {
        return Ok(None);
    }
    Ok(Some(found))
}

/// Where a thread state records its running loop, as words a sampler reads with its other
/// reads: a loop that ends, or another that starts in the same thread, shows at the next
/// sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningLoopWatch {
    watch: Watch,
    place: Place,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// 3.13+: a thread-state field holds the loop.
    Field,
    /// 3.12: the thread-state dict's entry holds the loop (or `None`).
    Entry,
    /// 3.8–3.11: the entry holds a `_RunningLoopHolder` (a new one each time a loop starts or
    /// stops), which holds the loop at `loop_at`.
    Holder { holder: u64, loop_at: u64 },
    /// No dict or no entry yet: nothing to watch cheaply (every check resolves again).
    Missing,
}

impl RunningLoopWatch {
    pub fn resolve<M: Memory>(r: &ObjectReader<M>, tstate: u64) -> Result<RunningLoopWatch> {
        let l = r.layout();
        let missing = RunningLoopWatch { watch: Watch::field(tstate + l.thread.dict), place: Place::Missing };
        Ok(match l.thread.running_loop {
            RunningLoop::Field { offset } => RunningLoopWatch { watch: Watch::field(tstate + offset), place: Place::Field },
            RunningLoop::InDict | RunningLoop::HolderInDict { .. } => {
                let dict_at = tstate + l.thread.dict;
                let dict = r.ptr(dict_at)?;
                let found = if dict == 0 { None } else { r.watch_dict_key(dict, RUNNING_LOOP_KEY)? };
                let Some(mut watch) = found else { return Ok(missing) };
                watch.checks.insert(0, Check { addr: dict_at, mask: u64::MAX, expect: dict });
                let place = match l.thread.running_loop {
                    RunningLoop::HolderInDict { holder_loop, .. } => Place::Holder { holder: r.u64(watch.slot)?, loop_at: holder_loop },
                    _ => Place::Entry,
                };
                RunningLoopWatch { watch, place }
            }
        })
    }

    /// The words to read: the watch's, then (3.8–3.11) the holder's loop field.
    pub fn addrs(&self) -> impl Iterator<Item = u64> + '_ {
        let holder = match self.place {
            Place::Holder { holder, loop_at } => Some(holder + loop_at),
            _ => None,
        };
        self.watch.addrs().chain(holder)
    }

    pub fn len(&self) -> usize {
        self.watch.len() + usize::from(matches!(self.place, Place::Holder { .. }))
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The object the thread names as its running loop (0, or the `None` object, when it
    /// runs none), from `words` read at [`addrs`](Self::addrs); `None` when the place moved or
    /// cannot be watched (call [`running_loop`] and resolve the watch again).
    pub fn loop_from(&self, words: &[u64]) -> Option<u64> {
        let n = self.watch.len();
        let value = self.watch.value(words.get(..n)?)?;
        match self.place {
            Place::Field | Place::Entry => Some(value),
            Place::Holder { holder, .. } if value == holder => words.get(n).copied(),
            Place::Holder { .. } | Place::Missing => None,
        }
    }
}

/// The kernel tid of a glibc thread, read from its `struct pthread` and confirmed against the
/// process's thread list.
fn tid_from_pthread<M: Memory>(r: &ObjectReader<M>, pthread: u64, os_tids: &[i32]) -> Option<i32> {
    if !crate::python::reader::plausible_pointer(pthread) {
        return None;
    }
    for off in PTHREAD_TID_OFFSETS {
        if let Ok(tid) = r.i32(pthread + off) {
            if os_tids.contains(&tid) {
                return Some(tid);
            }
        }
    }
    // Not glibc's layout: look for exactly one known tid in the first bytes of the struct.
    let raw = r.bytes(pthread, PTHREAD_TID_SCAN as usize).ok()?;
    let hits: HashSet<i32> =
        raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).filter(|v| os_tids.contains(v)).collect();
    if hits.len() == 1 {
        hits.into_iter().next()
    } else {
        None
    }
}

/// `sys.modules` (the interpreter's modules dict).
pub fn modules_dict<M: Memory>(r: &ObjectReader<M>, interp: u64) -> Result<u64> {
    r.obj_ptr(interp + r.layout().interp.modules)
}

/// The `__dict__` of an imported module, by name, or `None` when it is not imported.
pub fn module_dict<M: Memory>(r: &ObjectReader<M>, interp: u64, name: &str) -> Result<Option<u64>> {
    let modules = modules_dict(r, interp)?;
    let Some(module) = r.dict_get_str(modules, name)? else { return Ok(None) };
    let dict = r.ptr(module + r.layout().containers.module_dict)?;
    Ok((dict != 0).then_some(dict))
}

/// Python thread names (`threading.Thread.name`) by ident, from `threading._active`.
pub fn thread_names<M: Memory>(r: &ObjectReader<M>, interp: u64) -> Result<Vec<(u64, String)>> {
    let Some(threading) = module_dict(r, interp, "threading")? else { return Ok(Vec::new()) };
    let Some(active) = r.dict_get_str(threading, "_active")? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (key, thread) in r.dict_entries(active, limits::ITEMS.min(MAX_THREADS))? {
        let Ok(ident) = r.int(key) else { continue };
        let name = r.getattr(thread, "_name").ok().flatten().and_then(|n| r.name(n).ok());
        if let Some(name) = name {
            out.push((ident as u64, name));
        }
    }
    Ok(out)
}

/// Where to read a loop's current task from, resolved once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentTaskSource {
    /// The `asyncio.tasks._current_tasks` dict (≤ 3.13), keyed by loop.
    Dict(u64),
    /// `_PyThreadStateImpl.asyncio_running_task` (3.14+).
    ThreadField(u64),
    /// asyncio is not imported: no task can run.
    None,
}

impl CurrentTaskSource {
    pub fn resolve<M: Memory>(r: &ObjectReader<M>, interp: u64) -> Result<Self> {
        Ok(match r.layout().asyncio.current_task {
            CurrentTask::ThreadField { offset } => CurrentTaskSource::ThreadField(offset),
            CurrentTask::ModuleDict => {
                let dict = match module_dict(r, interp, "asyncio.tasks")? {
                    Some(tasks) => r.dict_get_str(tasks, "_current_tasks")?,
                    None => None,
                };
                dict.map(CurrentTaskSource::Dict).unwrap_or(CurrentTaskSource::None)
            }
        })
    }

    /// The task the loop running in `thread` is executing right now, if any.
    pub fn task<M: Memory>(&self, r: &ObjectReader<M>, thread: &PyThread, event_loop: u64) -> Result<Option<u64>> {
        let task = match *self {
            CurrentTaskSource::ThreadField(offset) => r.ptr(thread.tstate + offset)?,
            CurrentTaskSource::Dict(dict) => r.dict_get_identity(dict, event_loop)?.unwrap_or(0),
            CurrentTaskSource::None => 0,
        };
        if task == 0 || r.is_none(task)? {
            return Ok(None);
        }
        Ok(Some(task))
    }
}

/// The task that the loop running in `thread` is executing right now, if any.
pub fn current_task<M: Memory>(r: &ObjectReader<M>, interp: u64, thread: &PyThread, event_loop: u64) -> Result<Option<u64>> {
    CurrentTaskSource::resolve(r, interp)?.task(r, thread, event_loop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::FakeMemory;
    use crate::python::layout::{for_version, PyVersion};

    const INTERP: u64 = 0x5500_0000_0000;
    const STATES: [u64; 3] = [0x5600_0000_1000, 0x5600_0000_3000, 0x5600_0000_5000];

    /// An interpreter whose list holds three thread states (no loop running in any), the
    /// second of which names `second_interp` as its interpreter.
    fn memory(second_interp: u64) -> FakeMemory {
        let l = for_version(PyVersion::new(3, 13)).unwrap();
        let mut mem = FakeMemory::new();
        let mut interp = vec![0u8; 0x4000];
        interp[l.interp.threads_head as usize..][..8].copy_from_slice(&STATES[0].to_le_bytes());
        mem.map(INTERP, interp);
        for (i, ts) in STATES.iter().enumerate() {
            let mut state = vec![0u8; 0x1000];
            let next = STATES.get(i + 1).copied().unwrap_or(0);
            state[l.thread.next as usize..][..8].copy_from_slice(&next.to_le_bytes());
            let owner = if i == 1 { second_interp } else { INTERP };
            state[l.thread.interp as usize..][..8].copy_from_slice(&owner.to_le_bytes());
            state[l.thread.thread_id as usize..][..8].copy_from_slice(&(0x7f00_0000_0000u64 + i as u64).to_le_bytes());
            state[l.thread.native_thread_id.unwrap() as usize..][..8].copy_from_slice(&(100i64 + i as i64).to_le_bytes());
            mem.map(*ts, state);
        }
        mem
    }

    #[test]
    fn a_whole_list_is_every_thread() {
        let mem = memory(INTERP);
        let r = ObjectReader::new(&mem, for_version(PyVersion::new(3, 13)).unwrap());
        let threads = threads(&r, INTERP, &[]).unwrap();
        assert_eq!(threads.iter().map(|t| t.tstate).collect::<Vec<_>>(), STATES);
        assert_eq!(threads.iter().map(|t| t.native_id).collect::<Vec<_>>(), [Some(100), Some(101), Some(102)]);
        assert!(threads.iter().all(|t| t.running_loop.is_none()));
    }

    /// A thread state freed while the list was walked is not a thread, and its `next` is not
    /// the list's end: the walk fails, to be read again, rather than lose the threads after it.
    #[test]
    fn a_state_of_no_interpreter_is_a_torn_list() {
        for other in [0, 0x7f00_dead_0000] {
            let mem = memory(other);
            let r = ObjectReader::new(&mem, for_version(PyVersion::new(3, 13)).unwrap());
            let e = threads(&r, INTERP, &[]).unwrap_err();
            assert!(e.to_string().contains("changed while read"), "{e}");
        }
    }
}
