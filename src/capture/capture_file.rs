//! The capture file: a recording written to disk as it is taken, so that nothing sampled is
//! lost when loopspy is killed (SIGKILL), its terminal drops, or the disk fills; and so that a
//! recording can be rendered again later (`loopspy render`), with another threshold or format.
//!
//! Append-only and self-describing: a magic line, then records `[tag u8][len u32 LE][payload]`.
//! Definitions (loops, frames, stacks, names) come before the records that use them; a reader
//! stops at the first incomplete record, so a file cut anywhere reads as everything before
//! the cut. All numbers little-endian.
//!
//! | tag | payload |
//! |---|---|
//! | `H` | JSON [`CaptureHeader`] |
//! | `L` | JSON [`LoopMeta`] (loop index = order) |
//! | `F` | frame: line i32, function (u32 len + bytes), file (u32 len + bytes) (id = order) |
//! | `K` | stack: n u32, n × frame id u32 (id = order) |
//! | `N` | task name: bytes (id = order) |
//! | `T` | thread name (`--all-threads`): bytes (id = order) |
//! | `s` | sample: see [`encode_sample`] |
//! | `x` | failed look: t f64, loop u16, reason u8 |
//! | `o` | other thread's stack: t f64, thread u32, stack u32 |
//! | `c` | task count: t f64, loop u16, total/pending/done/cancelled/unknown u64, truncated u8 |
//! | `e` | default executor: t f64, loop u16, max_workers/threads/busy u32, queued u64, shutdown u8, n u16, n × worker (name u32, state u8, work frame u32, innermost frame u32; `u32::MAX` for none) |
//! | `G` | task groups of a loop: JSON [`TaskGroupSample`] |
//! | `E` | end: reason u8, ended f64 |
//! | `g` | the GC state of the sample whose `s` record follows it: u8 ([`GcAt::code`]: 0 unknown, 1 idle, 2 collecting, 3 + N collecting generation N); written after each sample whose state was read, absent in older files (their samples' GC state is unknown), skipped by older readers |
//!
//! Version 2 (`LSREC02`, written for `--subprocesses`) is version 1 plus the processes of a
//! tree, each loop and thread name belonging to one of them:
//!
//! | tag | payload |
//! |---|---|
//! | `P` | JSON [`ProcessMeta`] as it joined (process index = order) |
//! | `B` | belongs: kind u8 (0 loop, 1 thread name), index u32 (in order), process u16 |
//! | `D` | a process left: process u16, t f64, reason u8 ([`ProcessEnd::ALL`]) |
//!
//! A process is defined before the loops that belong to it, and a loop's `B` comes before
//! its samples. A version-1 reader refuses a version-2 file (its magic differs) rather than
//! showing every process's loops as one process's.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::asyncio::executor::WorkerState;
use crate::asyncio::loopstate::LoopState;
use crate::asyncio::tasks::TaskCounts;
use crate::capture::probe::FailReason;
use crate::capture::recording::{
    EndReason, ExecutorSample, FailedSample, ProcessEnd, ProcessMeta, Recording, Sample, TaskCountSample, ThreadActivity, ThreadSample,
    WorkerSample,
};
use crate::capture::task_groups::TaskGroupSample;
use crate::python::frames::StackFrame;
use crate::python::gc::GcAt;

pub const MAGIC: &[u8; 8] = b"LSREC01\n";
/// Version 2: the processes of a tree (`--subprocesses`).
pub const MAGIC_V2: &[u8; 8] = b"LSREC02\n";
/// The usual file name extension.
pub const EXTENSION: &str = "lsrec";
/// Longest record accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_RECORD: u32 = 64 << 20;
/// How often buffered records are pushed to the file at least (seconds).
const FLUSH_EVERY: f64 = 0.5;

/// What a capture says about its recording, besides the samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureHeader {
    pub pid: i32,
    pub command: Vec<String>,
    pub python: String,
    pub rate_hz: f64,
    pub started: f64,
    pub blocking: bool,
    pub all_threads: bool,
    /// The target's working directory (file names under it are shown relative).
    pub cwd: Option<String>,
    /// `--subprocesses`: `pid` is the parent; the processes recorded are in `P` records
    /// (version 2).
    #[serde(default)]
    pub subprocesses: bool,
}

/// How much of a recording has been written.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    loops: usize,
    frames: usize,
    stacks: usize,
    tasks: usize,
    threads: usize,
    samples: usize,
    failures: usize,
    others: usize,
    counts: usize,
    executors: usize,
    /// Task group passes written (of all ever pushed).
    groups: usize,
    processes: usize,
    loop_process: usize,
    thread_process: usize,
    /// Processes whose `D` record was written.
    left: usize,
}

/// Appends a recording to a capture file as it grows.
pub struct CaptureWriter {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: Written,
    last_flush: Instant,
    /// The first write error; the capture stopped there (the recording goes on in memory).
    pub error: Option<String>,
    buf: Vec<u8>,
}

impl CaptureWriter {
    /// Create the capture file (never over an existing file or through a symlink).
    pub fn create(path: &Path, header: &CaptureHeader) -> io::Result<CaptureWriter> {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
        let mut w = CaptureWriter {
            path: path.to_path_buf(),
            out: Some(BufWriter::with_capacity(64 << 10, file)),
            written: Written::default(),
            last_flush: Instant::now(),
            error: None,
            buf: Vec::new(),
        };
        w.raw(if header.subprocesses { MAGIC_V2 } else { MAGIC });
        let json = serde_json::to_vec(header).expect("header serialises");
        w.record(b'H', &json);
        w.flush();
        if let Some(e) = w.error.take() {
            let _ = std::fs::remove_file(path);
            return Err(io::Error::other(e));
        }
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn raw(&mut self, bytes: &[u8]) {
        if let Some(out) = &mut self.out {
            if let Err(e) = out.write_all(bytes) {
                self.fail(e);
            }
        }
    }

    fn fail(&mut self, e: io::Error) {
        self.error.get_or_insert_with(|| e.to_string());
        // Keep what reached the file; stop writing (a full disk stays full).
        if let Some(out) = self.out.take() {
            let _ = out.into_inner().map(|f| f.sync_all());
        }
    }

    fn record(&mut self, tag: u8, payload: &[u8]) {
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        self.raw(&head);
        self.raw(payload);
    }

    /// Write what the recording gained since the last call (definitions first).
    pub fn sync(&mut self, rec: &Recording) {
        if self.out.is_none() {
            return;
        }
        let w = self.written;
        for p in &rec.processes[w.processes.min(rec.processes.len())..] {
            let joined = ProcessMeta { left: None, end: None, ..p.clone() };
            let json = serde_json::to_vec(&joined).expect("process meta serialises");
            self.record(b'P', &json);
        }
        for meta in &rec.loops[w.loops..] {
            let json = serde_json::to_vec(meta).expect("loop meta serialises");
            self.record(b'L', &json);
        }
        for (i, p) in rec.loop_process.iter().enumerate().skip(w.loop_process) {
            self.belongs(0, i, *p);
        }
        for id in w.frames..rec.frames.len() {
            let f = rec.frames.get(id as u32);
            let mut p = std::mem::take(&mut self.buf);
            p.clear();
            p.extend_from_slice(&f.line.to_le_bytes());
            put_str(&mut p, &f.function);
            put_str(&mut p, &f.file);
            self.record(b'F', &p);
            self.buf = p;
        }
        for id in w.stacks..rec.stacks.len() {
            let frames = rec.stacks.get(id as u32);
            let mut p = std::mem::take(&mut self.buf);
            p.clear();
            p.extend_from_slice(&(frames.len() as u32).to_le_bytes());
            for f in frames {
                p.extend_from_slice(&f.to_le_bytes());
            }
            self.record(b'K', &p);
            self.buf = p;
        }
        for id in w.tasks..rec.tasks.len() {
            let name = rec.tasks.get(id as u32).to_string();
            self.record(b'N', name.as_bytes());
        }
        for id in w.threads..rec.threads.len() {
            let name = rec.threads.get(id as u32).to_string();
            self.record(b'T', name.as_bytes());
        }
        for (i, p) in rec.thread_process.iter().enumerate().skip(w.thread_process) {
            self.belongs(1, i, *p);
        }
        // Sample, failure and other-thread counts are absolute: a recording may have let go
        // of those already written ([`Recording::forget_before`]).
        let fg = &rec.forgotten;
        let held = |written: usize, forgotten: u64| written.saturating_sub(forgotten as usize);
        for s in rec.samples.get(held(w.samples, fg.samples)..).unwrap_or(&[]) {
            if s.gc != GcAt::Unknown {
                self.record(b'g', &[s.gc.code()]);
            }
            let p = encode_sample(s);
            self.record(b's', &p);
        }
        for f in rec.failures.get(held(w.failures, fg.failures)..).unwrap_or(&[]) {
            let mut p = Vec::with_capacity(11);
            p.extend_from_slice(&f.t.to_le_bytes());
            p.extend_from_slice(&f.loop_index.to_le_bytes());
            p.push(FailReason::ALL.iter().position(|r| *r == f.reason).unwrap_or(0) as u8);
            self.record(b'x', &p);
        }
        for o in rec.other_threads.get(held(w.others, fg.other_threads)..).unwrap_or(&[]) {
            let mut p = Vec::with_capacity(16);
            p.extend_from_slice(&o.t.to_le_bytes());
            p.extend_from_slice(&o.thread.to_le_bytes());
            p.extend_from_slice(&o.stack.to_le_bytes());
            self.record(b'o', &p);
        }
        for c in &rec.task_counts[w.counts..] {
            let mut p = Vec::with_capacity(51);
            p.extend_from_slice(&c.t.to_le_bytes());
            p.extend_from_slice(&c.loop_index.to_le_bytes());
            for n in [c.counts.total, c.counts.pending, c.counts.done, c.counts.cancelled, c.counts.unknown] {
                p.extend_from_slice(&(n as u64).to_le_bytes());
            }
            p.push(c.truncated as u8);
            self.record(b'c', &p);
        }
        for x in rec.executors.get(w.executors..).unwrap_or(&[]) {
            let p = encode_executor(x);
            self.record(b'e', &p);
        }
        for g in rec.task_groups.since(w.groups) {
            let json = serde_json::to_vec(g).expect("task groups serialise");
            self.record(b'G', &json);
        }
        // Processes leave in any order: each `D` once, in process order, written as soon as
        // every earlier process has left (a process that leaves before an earlier one waits).
        let mut left = w.left;
        while let Some(p) = rec.processes.get(left) {
            let (Some(t), Some(end)) = (p.left, p.end) else { break };
            let mut payload = Vec::with_capacity(11);
            payload.extend_from_slice(&(left as u16).to_le_bytes());
            payload.extend_from_slice(&t.to_le_bytes());
            payload.push(ProcessEnd::ALL.iter().position(|e| *e == end).unwrap_or(0) as u8);
            self.record(b'D', &payload);
            left += 1;
        }
        self.written = Written {
            loops: rec.loops.len(),
            frames: rec.frames.len(),
            stacks: rec.stacks.len(),
            tasks: rec.tasks.len(),
            threads: rec.threads.len(),
            samples: rec.samples.len() + fg.samples as usize,
            failures: rec.failures.len() + fg.failures as usize,
            others: rec.other_threads.len() + fg.other_threads as usize,
            counts: rec.task_counts.len(),
            executors: rec.executors.len(),
            groups: rec.task_groups.total,
            processes: rec.processes.len(),
            loop_process: rec.loop_process.len(),
            thread_process: rec.thread_process.len(),
            left,
        };
        if self.last_flush.elapsed().as_secs_f64() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Push buffered records to the file.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                self.fail(e);
            }
        }
    }

    /// Write the rest and the end record, and close the file.
    pub fn finish(mut self, rec: &Recording) -> Result<PathBuf, (PathBuf, String)> {
        self.sync(rec);
        let mut p = vec![end_code(rec.end)];
        p.extend_from_slice(&rec.ended.to_le_bytes());
        self.record(b'E', &p);
        self.flush();
        if let Some(out) = self.out.take() {
            if let Err(e) = out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()) {
                self.error.get_or_insert_with(|| e.to_string());
            }
        }
        match self.error {
            None => Ok(self.path),
            Some(e) => Err((self.path, e)),
        }
    }
}

impl CaptureWriter {
    fn belongs(&mut self, kind: u8, index: usize, process: u16) {
        let mut p = Vec::with_capacity(7);
        p.push(kind);
        p.extend_from_slice(&(index as u32).to_le_bytes());
        p.extend_from_slice(&process.to_le_bytes());
        self.record(b'B', &p);
    }
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

const STATES: [LoopState; 5] = LoopState::ALL;

fn end_code(end: EndReason) -> u8 {
    EndReason::ALL.iter().position(|e| *e == end).unwrap_or(0) as u8
}

/// `t f64, loop u16, state u8, activity u8 (0 on CPU, 1 waiting, 2 blocked, 3 unknown),
/// syscall i64, ready u32, lateness f32 (NaN: none), stack u32, loop_frames u16, callback
/// u64 + present u8, task u32 (u32::MAX: none), busy_for f32 (NaN: none)`.
pub fn encode_sample(s: &Sample) -> Vec<u8> {
    let mut p = Vec::with_capacity(56);
    p.extend_from_slice(&s.t.to_le_bytes());
    p.extend_from_slice(&s.loop_index.to_le_bytes());
    p.push(STATES.iter().position(|x| *x == s.state).unwrap_or(3) as u8);
    let (kind, nr) = match s.activity {
        ThreadActivity::OnCpu => (0u8, 0i64),
        ThreadActivity::Waiting(nr) => (1, nr),
        ThreadActivity::Blocked => (2, 0),
        ThreadActivity::Unknown => (3, 0),
    };
    p.push(kind);
    p.extend_from_slice(&nr.to_le_bytes());
    p.extend_from_slice(&s.ready.to_le_bytes());
    p.extend_from_slice(&s.lateness.unwrap_or(f32::NAN).to_le_bytes());
    p.extend_from_slice(&s.stack.to_le_bytes());
    p.extend_from_slice(&s.loop_frames.to_le_bytes());
    p.extend_from_slice(&s.callback.unwrap_or(0).to_le_bytes());
    p.push(s.callback.is_some() as u8);
    p.extend_from_slice(&s.task.unwrap_or(u32::MAX).to_le_bytes());
    p.extend_from_slice(&s.busy_for.unwrap_or(f32::NAN).to_le_bytes());
    p
}

/// Reads a payload field by field; any overrun is an error (a corrupt record), not a panic.
struct Fields<'a> {
    b: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(bad("record shorter than its fields"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn f32(&mut self) -> io::Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn f64(&mut self) -> io::Result<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn str(&mut self) -> io::Result<String> {
        let n = self.u32()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not a loopspy capture: {what}"))
}

/// A capture read back.
#[derive(Debug)]
pub struct Capture {
    pub header: CaptureHeader,
    pub recording: Recording,
    /// The file ended before its end record: loopspy was stopped while recording (the
    /// recording holds everything up to the cut).
    pub cut: bool,
}

/// Read a capture file, whole or cut anywhere.
pub fn read(path: &Path) -> io::Result<Capture> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    parse(&data)
}

/// Parse a capture held in memory.
pub fn parse(data: &[u8]) -> io::Result<Capture> {
    if data.len() < MAGIC.len() || (&data[..MAGIC.len()] != MAGIC && &data[..MAGIC.len()] != MAGIC_V2) {
        return Err(bad("no LSREC01 or LSREC02 magic"));
    }
    let mut at = MAGIC.len();
    let mut header: Option<CaptureHeader> = None;
    let mut rec: Option<Recording> = None;
    let mut cut = true;
    let mut prev_tag = 0u8;
    let mut gc = GcAt::Unknown;
    while at + 5 <= data.len() {
        let tag = data[at];
        let len = u32::from_le_bytes(data[at + 1..at + 5].try_into().expect("4 bytes"));
        if len > MAX_RECORD || at + 5 + len as usize > data.len() {
            break; // cut here
        }
        let payload = &data[at + 5..at + 5 + len as usize];
        at += 5 + len as usize;
        let mut f = Fields { b: payload };
        let after_gc = std::mem::replace(&mut prev_tag, tag) == b'g';
        if tag == b'H' {
            let h: CaptureHeader = serde_json::from_slice(payload).map_err(|e| bad(&e.to_string()))?;
            rec = Some(Recording::new(h.rate_hz, Vec::new(), h.started));
            header = Some(h);
            continue;
        }
        let Some(r) = rec.as_mut() else { return Err(bad("records before the header")) };
        match tag {
            b'L' => r.loops.push(serde_json::from_slice(payload).map_err(|e| bad(&e.to_string()))?),
            b'F' => {
                let line = f.i32()?;
                let function = f.str()?;
                let file = f.str()?;
                let id = r.frames.intern(StackFrame { function: function.into(), file: file.into(), line });
                if id as usize + 1 != r.frames.len() {
                    return Err(bad("a frame defined twice"));
                }
            }
            b'K' => {
                let n = f.u32()? as usize;
                if n > payload.len() / 4 {
                    return Err(bad("stack length"));
                }
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = f.u32()?;
                    if id as usize >= r.frames.len() {
                        return Err(bad("a stack of an undefined frame"));
                    }
                    ids.push(id);
                }
                let id = r.stacks.intern(ids);
                if id as usize + 1 != r.stacks.len() {
                    return Err(bad("a stack defined twice"));
                }
            }
            b'N' => {
                r.tasks.push(String::from_utf8_lossy(payload).into_owned());
            }
            b'T' => {
                r.threads.push(String::from_utf8_lossy(payload).into_owned());
            }
            b's' => {
                let mut s = decode_sample(&mut f)?;
                s.gc = if after_gc { gc } else { GcAt::Unknown };
                if s.stack as usize >= r.stacks.len() || s.task.is_some_and(|t| t as usize >= r.tasks.len()) {
                    return Err(bad("a sample of an undefined stack or task"));
                }
                r.ended = r.ended.max(s.t);
                r.samples.push(s);
            }
            // The GC state of the sample that follows (older readers skip it).
            b'g' => gc = GcAt::from_code(f.u8()?),
            b'x' => {
                let t = f.f64()?;
                let loop_index = f.u16()?;
                let reason = *FailReason::ALL.get(f.u8()? as usize).ok_or_else(|| bad("failure reason"))?;
                r.failures.push(FailedSample { t, loop_index, reason });
            }
            b'o' => {
                let (t, thread, stack) = (f.f64()?, f.u32()?, f.u32()?);
                if stack as usize >= r.stacks.len() || thread as usize >= r.threads.len() {
                    return Err(bad("a thread sample of an undefined stack"));
                }
                r.other_threads.push(ThreadSample { t, thread, stack });
            }
            b'c' => {
                let t = f.f64()?;
                let loop_index = f.u16()?;
                let mut n = [0usize; 5];
                for v in &mut n {
                    *v = f.u64()? as usize;
                }
                let truncated = f.u8()? != 0;
                let counts = TaskCounts { total: n[0], pending: n[1], done: n[2], cancelled: n[3], unknown: n[4] };
                r.task_counts.push(TaskCountSample { t, loop_index, counts, truncated });
            }
            b'e' => {
                let x = decode_executor(&mut f)?;
                let name_ok = |n: Option<u32>| n.is_none_or(|n| (n as usize) < r.threads.len());
                let frame_ok = |n: Option<u32>| n.is_none_or(|n| (n as usize) < r.frames.len());
                if x.workers.iter().any(|w| !name_ok(w.name) || !frame_ok(w.work) || !frame_ok(w.at)) {
                    return Err(bad("an executor worker of an undefined name or frame"));
                }
                r.executors.push(x);
            }
            b'G' => {
                let g: TaskGroupSample = serde_json::from_slice(payload).map_err(|e| bad(&e.to_string()))?;
                if g.loop_index as usize >= r.loops.len() {
                    return Err(bad("task groups of an undefined loop"));
                }
                r.task_groups.push(g);
            }
            b'P' => {
                let p: ProcessMeta = serde_json::from_slice(payload).map_err(|e| bad(&e.to_string()))?;
                if r.processes.len() >= u16::MAX as usize {
                    return Err(bad("too many processes"));
                }
                r.processes.push(p);
            }
            b'B' => {
                let kind = f.u8()?;
                let index = f.u32()? as usize;
                let process = f.u16()?;
                if process as usize >= r.processes.len() {
                    return Err(bad("a loop or thread of an undefined process"));
                }
                let (list, defined) = match kind {
                    0 => (&mut r.loop_process, r.loops.len()),
                    1 => (&mut r.thread_process, r.threads.len()),
                    _ => return Err(bad("belongs kind")),
                };
                if index != list.len() || index >= defined {
                    return Err(bad("a process given out of order or to an undefined loop or thread"));
                }
                list.push(process);
            }
            b'D' => {
                let process = f.u16()? as usize;
                let t = f.f64()?;
                let end = *ProcessEnd::ALL.get(f.u8()? as usize).ok_or_else(|| bad("process end"))?;
                let p = r.processes.get_mut(process).ok_or_else(|| bad("the end of an undefined process"))?;
                p.left = Some(t);
                p.end = Some(end);
            }
            b'E' => {
                r.end = *EndReason::ALL.get(f.u8()? as usize).ok_or_else(|| bad("end reason"))?;
                r.ended = f.f64()?;
                cut = false;
            }
            _ => {} // a record kind from a newer loopspy: skipped
        }
    }
    let (Some(header), Some(mut recording)) = (header, rec) else { return Err(bad("no header")) };
    if recording.is_fleet() {
        // A file cut between a loop and the record of its process: that loop has no samples.
        recording.loops.truncate(recording.loop_process.len());
    }
    if recording.samples.iter().any(|s| s.loop_index as usize >= recording.loops.len()) {
        return Err(bad("a sample of an undefined loop"));
    }
    if cut {
        recording.end = EndReason::Cut;
    }
    Ok(Capture { header, recording, cut })
}

const NONE32: u32 = u32::MAX;

fn encode_executor(x: &ExecutorSample) -> Vec<u8> {
    let n = x.workers.len().min(ExecutorSample::WORKERS);
    let mut p = Vec::with_capacity(37 + 13 * n);
    p.extend_from_slice(&x.t.to_le_bytes());
    p.extend_from_slice(&x.loop_index.to_le_bytes());
    for v in [x.max_workers, x.threads, x.busy] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    p.extend_from_slice(&x.queued.to_le_bytes());
    p.push(x.shutdown as u8);
    p.extend_from_slice(&(n as u16).to_le_bytes());
    for w in &x.workers[..n] {
        p.extend_from_slice(&w.name.unwrap_or(NONE32).to_le_bytes());
        p.push(WorkerState::ALL.iter().position(|s| *s == w.state).unwrap_or(2) as u8);
        p.extend_from_slice(&w.work.unwrap_or(NONE32).to_le_bytes());
        p.extend_from_slice(&w.at.unwrap_or(NONE32).to_le_bytes());
    }
    p
}

fn decode_executor(f: &mut Fields) -> io::Result<ExecutorSample> {
    let t = f.f64()?;
    let loop_index = f.u16()?;
    let (max_workers, threads, busy) = (f.u32()?, f.u32()?, f.u32()?);
    let queued = f.u64()?;
    let shutdown = f.u8()? != 0;
    let n = f.u16()? as usize;
    if n > ExecutorSample::WORKERS {
        return Err(bad("executor workers"));
    }
    let opt = |v: u32| (v != NONE32).then_some(v);
    let mut workers = Vec::with_capacity(n);
    for _ in 0..n {
        let name = opt(f.u32()?);
        let state = *WorkerState::ALL.get(f.u8()? as usize).ok_or_else(|| bad("worker state"))?;
        let (work, at) = (opt(f.u32()?), opt(f.u32()?));
        workers.push(WorkerSample { name, state, work, at });
    }
    Ok(ExecutorSample { t, loop_index, max_workers, threads, busy, queued, shutdown, workers })
}

fn decode_sample(f: &mut Fields) -> io::Result<Sample> {
    let t = f.f64()?;
    let loop_index = f.u16()?;
    let state = *STATES.get(f.u8()? as usize).ok_or_else(|| bad("state"))?;
    let kind = f.u8()?;
    let nr = f.i64()?;
    let activity = match kind {
        0 => ThreadActivity::OnCpu,
        1 => ThreadActivity::Waiting(nr),
        2 => ThreadActivity::Blocked,
        _ => ThreadActivity::Unknown,
    };
    let ready = f.u32()?;
    let lateness = Some(f.f32()?).filter(|v| !v.is_nan());
    let stack = f.u32()?;
    let loop_frames = f.u16()?;
    let callback_value = f.u64()?;
    let callback = (f.u8()? != 0).then_some(callback_value);
    let task = Some(f.u32()?).filter(|t| *t != u32::MAX);
    let busy_for = Some(f.f32()?).filter(|v| !v.is_nan());
    Ok(Sample { t, loop_index, state, activity, ready, lateness, stack, loop_frames, callback, task, busy_for, gc: GcAt::Unknown })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asyncio::eventloop::LoopKind;
    use crate::capture::recording::{LoopMeta, KEEP_NAMES};
    use proptest::prelude::*;

    fn recording() -> Recording {
        let meta = LoopMeta {
            native_id: Some(7),
            thread_name: Some("Main\nThread".into()),
            loop_class: "L".into(),
            loop_kind: LoopKind::Selector,
            selector: None,
            found: None,
        };
        let mut rec = Recording::new(100.0, vec![meta], 10.0);
        let a = rec.intern_stack(&[StackFrame { function: "f;\u{1b}".into(), file: "/a.py".into(), line: 3 }]);
        let task = rec.tasks.intern("Task-1".into());
        for i in 0..50 {
            rec.samples.push(Sample {
                t: 10.0 + i as f64 / 100.0,
                loop_index: 0,
                state: if i % 3 == 0 { LoopState::Idle } else { LoopState::Callback },
                activity: if i % 2 == 0 { ThreadActivity::OnCpu } else { ThreadActivity::Waiting(230) },
                ready: i,
                lateness: (i % 5 != 0).then_some(i as f32 / 1000.0),
                stack: a,
                loop_frames: 1,
                callback: (i % 3 != 0).then_some(0xabc + i as u64),
                task: (i % 2 == 0).then_some(task),
                busy_for: None,
                gc: GcAt::from_code((i % 7) as u8),
            });
        }
        rec.failures.push(FailedSample { t: 10.2, loop_index: 0, reason: FailReason::TornStack });
        let name = rec.threads.intern("asyncio_0\u{1b}".into());
        let work = rec.frames.intern(StackFrame { function: "render".into(), file: "/a.py".into(), line: 9 });
        rec.executors.push(ExecutorSample {
            t: 10.3,
            loop_index: 0,
            max_workers: 2,
            threads: 2,
            busy: 1,
            queued: 7,
            shutdown: false,
            workers: vec![
                WorkerSample { name: Some(name), state: WorkerState::Busy, work: Some(work), at: Some(work) },
                WorkerSample { name: None, state: WorkerState::Idle, work: None, at: None },
            ],
        });
        rec.end = EndReason::Duration;
        rec.ended = 10.5;
        rec
    }

    fn header() -> CaptureHeader {
        CaptureHeader {
            pid: 1,
            command: vec!["python3".into()],
            python: "3.12.1".into(),
            rate_hz: 100.0,
            started: 10.0,
            blocking: false,
            all_threads: false,
            cwd: None,
            subprocesses: false,
        }
    }

    fn written(rec: &Recording) -> Vec<u8> {
        // In two steps, as a recording grows.
        written_with(rec, &header(), |r| {
            let mut half = r.clone();
            half.samples.truncate(20);
            half.failures.clear();
            half
        })
    }

    fn written_with(rec: &Recording, header: &CaptureHeader, partial: impl Fn(&Recording) -> Recording) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.lsrec");
        let mut w = CaptureWriter::create(&path, header).unwrap();
        w.sync(&partial(rec));
        w.finish(rec).unwrap();
        std::fs::read(&path).unwrap()
    }

    /// A long recording whose every task has its own name (asyncio's `Task-N`) beside one
    /// that lives throughout, written as `record` writes it (synced, then samples and the
    /// names they used let go of): memory holds a bounded number of names, and the file
    /// read back names every sample's task as it was sampled.
    #[test]
    fn names_let_go_of_are_written_first_and_read_back_right() {
        let mut rec = recording();
        let model = rec.samples[1];
        rec.samples.clear();
        rec.failures.clear();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.lsrec");
        let mut w = CaptureWriter::create(&path, &header()).unwrap();
        let mut truth = Vec::new();
        let mut most_held = 0;
        for i in 0..40_000u32 {
            let t = 10.0 + i as f64 / 1000.0;
            // Every 7th sample the long-lived task, else a fresh name, and now and then one
            // last seen long ago (forgotten by then: it comes back under a new id).
            let name = match i % 7 {
                0 => "worker".to_string(),
                3 if i > 20_000 => format!("Task-{}", i - 20_000),
                _ => format!("Task-{i}"),
            };
            let task = rec.tasks.intern_at(name.clone(), t);
            let mut s = model;
            s.t = t;
            s.task = Some(task);
            rec.samples.push(s);
            truth.push(name);
            w.sync(&rec);
            if rec.samples.len() > 2048 {
                let cut = rec.samples[rec.samples.len() - 1024].t;
                rec.forget_before(cut, false);
            }
            most_held = most_held.max(rec.tasks.held());
        }
        rec.ended = 60.0;
        w.finish(&rec).unwrap();
        // At most twice the names kept, and those given between two lets-go (1,025 here).
        assert!(most_held <= 2 * KEEP_NAMES + 1025, "{most_held} names held");
        assert!(rec.tasks.len() > 30_000, "ids given: {}", rec.tasks.len());
        let back = read(&path).unwrap().recording;
        assert_eq!(back.samples.len(), truth.len());
        for (s, name) in back.samples.iter().zip(&truth) {
            assert_eq!(back.tasks.get(s.task.unwrap()), name, "at {}", s.t);
        }
    }

    /// Two processes, the second joining late with its own loop, the first leaving.
    fn fleet() -> Recording {
        let mut rec = recording();
        // No executor: its worker names would be thread names of no process.
        rec.executors.clear();
        rec.threads = Default::default();
        rec.processes = vec![
            ProcessMeta {
                pid: 10,
                parent_pid: Some(1),
                command: vec!["gunicorn".into()],
                python: "3.12.1".into(),
                joined: 10.0,
                left: Some(10.3),
                end: Some(ProcessEnd::Exited),
            },
            ProcessMeta {
                pid: 11,
                parent_pid: Some(1),
                command: vec!["gunicorn".into()],
                python: "3.12.1".into(),
                joined: 10.2,
                left: None,
                end: None,
            },
        ];
        let mut second = rec.loops[0].clone();
        second.native_id = Some(11);
        rec.loops.push(second);
        rec.loop_process = vec![0, 1];
        rec.threads.intern("PID 11 thread 12".into());
        rec.thread_process = vec![1];
        for s in rec.samples.iter_mut().skip(25) {
            s.loop_index = 1;
        }
        rec.other_threads.push(ThreadSample { t: 10.4, thread: 0, stack: 0 });
        rec
    }

    fn fleet_header() -> CaptureHeader {
        CaptureHeader { subprocesses: true, ..header() }
    }

    /// The recording as it stood at its 20th sample: the second process had not joined.
    fn fleet_early(rec: &Recording) -> Recording {
        let mut early = rec.clone();
        early.samples.truncate(20);
        early.failures.clear();
        early.loops.truncate(1);
        early.loop_process.truncate(1);
        early.processes.truncate(1);
        early.processes[0].left = None;
        early.processes[0].end = None;
        early.threads = Default::default();
        early.thread_process.clear();
        early.other_threads.clear();
        early
    }

    #[test]
    fn a_capture_of_several_processes_reads_back_whole() {
        let rec = fleet();
        let data = written_with(&rec, &fleet_header(), fleet_early);
        assert_eq!(&data[..MAGIC_V2.len()], MAGIC_V2, "a new version for a new layout");
        let back = parse(&data).unwrap();
        assert!(back.header.subprocesses);
        assert_eq!(back.recording.processes, rec.processes);
        assert_eq!(back.recording.loops, rec.loops);
        assert_eq!(back.recording.loop_process, rec.loop_process);
        assert_eq!(back.recording.thread_process, rec.thread_process);
        assert_eq!(back.recording.samples, rec.samples);
        assert_eq!(back.recording.other_threads, rec.other_threads);
        assert_eq!(back.recording.process_of_loop(1), Some(1));
        // A single-process capture keeps the first version.
        assert_eq!(&written(&recording())[..MAGIC.len()], MAGIC);
    }

    #[test]
    fn a_capture_of_several_processes_cut_anywhere_is_consistent() {
        let rec = fleet();
        let data = written_with(&rec, &fleet_header(), fleet_early);
        let mut last = 0;
        for cut in (MAGIC_V2.len()..data.len()).step_by(3) {
            let Ok(c) = parse(&data[..cut]) else { continue };
            let r = &c.recording;
            assert!(r.samples.len() >= last);
            last = r.samples.len();
            assert_eq!(r.samples[..], rec.samples[..r.samples.len()]);
            // Every loop it keeps has its process, every sample its loop.
            assert_eq!(r.loops.len(), r.loop_process.len(), "cut at {cut}");
            assert!(r.samples.iter().all(|s| r.process_of_loop(s.loop_index).is_some()), "cut at {cut}");
            assert!(r.processes.iter().all(|p| p.end.is_none() || p.left.is_some()));
        }
        assert_eq!(last, rec.samples.len());
    }

    #[test]
    fn records_of_processes_out_of_order_are_refused() {
        let rec = fleet();
        let data = written_with(&rec, &fleet_header(), fleet_early);
        // The `B` record of the first loop names process 1, which is not yet defined.
        let at = data.windows(6).position(|w| w == [b'B', 7, 0, 0, 0, 0]).expect("a belongs record");
        let mut bad = data.clone();
        bad[at + 5 + 5] = 1;
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn a_capture_reads_back_as_the_recording() {
        let rec = recording();
        let back = parse(&written(&rec)).unwrap();
        assert!(!back.cut);
        assert_eq!(back.header, header());
        assert_eq!(back.recording.samples, rec.samples);
        assert_eq!(back.recording.failures, rec.failures);
        assert_eq!(back.recording.loops, rec.loops);
        assert_eq!(back.recording.end, EndReason::Duration);
        assert_eq!(back.recording.stack(0).collect::<Vec<_>>(), rec.stack(0).collect::<Vec<_>>());
        assert_eq!(back.recording.tasks.get(0), "Task-1");
        assert_eq!(back.recording.executors, rec.executors);
        assert_eq!(back.recording.threads.get(0), "asyncio_0\u{1b}");
    }

    #[test]
    fn task_groups_read_back_written_once() {
        use crate::capture::task_groups::{TaskGroup, TaskGroupSample};
        let mut rec = recording();
        let group = TaskGroup {
            function: "worker".into(),
            file: "/app/x.py".into(),
            line: 12,
            waits_on: crate::asyncio::tasks::WaitKind::Semaphore,
            via: Some("Semaphore.acquire".into()),
            examined: 900,
            estimated: 9000,
            objects: 1,
            object: Some("0x7f00".into()),
            object_type: Some("Semaphore".into()),
            object_name: None,
        };
        let pass = |t: f64| TaskGroupSample {
            t,
            loop_index: 0,
            pending: 10_000,
            examined: 1000,
            sampled: true,
            unreadable: 2,
            groups: vec![group.clone()],
            other_tasks: 98,
            cost_ms: 12.5,
        };
        rec.task_groups.push(pass(10.1));
        rec.task_groups.push(pass(10.4));
        // Written in two steps: the first pass before, both after.
        let data = written_with(&rec, &header(), |r| {
            let mut early = r.clone();
            early.task_groups = Default::default();
            early.task_groups.push(pass(10.1));
            early
        });
        let back = parse(&data).unwrap();
        assert_eq!(back.recording.task_groups.passes, rec.task_groups.passes);
    }

    #[test]
    fn a_capture_cut_anywhere_reads_as_what_came_before() {
        let rec = recording();
        let data = written(&rec);
        let mut last = 0;
        let header_end = MAGIC.len() + 5 + u32::from_le_bytes(data[MAGIC.len() + 1..MAGIC.len() + 5].try_into().unwrap()) as usize;
        for cut in (MAGIC.len()..data.len()).step_by(7) {
            match parse(&data[..cut]) {
                Ok(c) => {
                    assert!(c.cut);
                    assert_eq!(c.recording.end, EndReason::Cut);
                    assert!(c.recording.samples.len() >= last, "monotone");
                    last = c.recording.samples.len();
                    assert_eq!(c.recording.samples[..], rec.samples[..c.recording.samples.len()]);
                }
                Err(e) => assert!(cut < header_end, "only a cut inside the header fails: {e} at {cut}"),
            }
        }
        assert!(last >= 49);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000), keep_magic in any::<bool>()) {
            let mut d = data;
            if keep_magic {
                let mut with = MAGIC.to_vec();
                with.extend(d);
                d = with;
            }
            let _ = parse(&d);
        }
    }
}
