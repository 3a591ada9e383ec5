//! The sampler's stack walk: the same frames, code objects and lines as [`walk`] and
//! [`StackReader::frame`], in about two system calls instead of three or four per frame.
//!
//! - The memory around the frames the previous walk of this thread went through is read in
//!   the same `process_vm_readv` as the thread's current-frame pointer (after it, so every byte
//!   used is read after the pointer that leads to it was): a few ranges, one per cluster of
//!   nearby frames, the innermost one extended past its end, where the frames of calls made
//!   since then go (3.11+ keep frames in a per-thread data stack). The walk then follows the
//!   chain from the current-frame pointer as [`walk`] does, taking each frame from those bytes
//!   when they hold it and reading it alone otherwise. Nothing is carried over from the
//!   previous sample but *where to look*.
//! - Every code object on the stack has its header (type, name and line-table pointers, first
//!   line) read in one more call; the cached names and line table are used only when that
//!   header matches the one they were read with.
//!
//! [`walk`]: super::walk

use std::collections::HashSet;

use super::{code_header_span, decode_frame_unchecked, frame_span, identity, FrameRef, StackFrame, StackReader, MAX_FRAMES, SHIM_FILES};
use crate::process::memory::Memory;
use crate::python::layout::{EntryMarker, FrameChain, StackBottom, CO_GENERATOR_LIKE};
use crate::python::reader::{le, plausible_pointer, Error, ObjectReader, Result};

/// Bytes read past the innermost frame of the previous walk, where the frames of calls made
/// since then are on 3.11+ (about 20 small frames).
const GROWTH: u64 = 4096;
/// Frames closer than this to each other are read as one range.
const CLUSTER_GAP: u64 = 4096;
/// Longest single range.
const MAX_REGION: u64 = 64 * 1024;
/// Most frame addresses remembered per thread.
const MAX_KNOWN: usize = 256;
/// Walks after which a frame address not seen again is forgotten.
const KEEP_WALKS: u32 = 16;

/// Where the recent walks of a thread went.
#[derive(Debug, Default, Clone)]
pub(super) struct Hint {
    /// `_PyCFrame` address (3.11–3.12).
    cframe: u64,
    /// Walks of this thread so far.
    walks: u32,
    /// The innermost frame of the last walk.
    innermost: u64,
    /// The thread's base frame (3.15+: `PyThreadState.base_frame`, fixed for its life).
    base_frame: Option<u64>,
    /// Frame addresses seen in recent walks (shims included), sorted by address.
    known: Vec<Known>,
}

/// A frame address seen recently.
#[derive(Debug, Clone, Copy)]
struct Known {
    addr: u64,
    /// The walk that last went through it.
    last: u32,
    /// How many walks went through it.
    seen: u32,
}

impl Hint {
    /// Remember the frames of the walk just made (`visited`, innermost first).
    fn update(&mut self, visited: &[u64]) {
        self.walks += 1;
        let walk = self.walks;
        self.innermost = visited.first().copied().unwrap_or(0);
        for &addr in visited {
            match self.known.binary_search_by_key(&addr, |k| k.addr) {
                Ok(i) => {
                    let k = &mut self.known[i];
                    if k.last != walk {
                        k.last = walk;
                        k.seen += 1;
                    }
                }
                Err(i) => self.known.insert(i, Known { addr, last: walk, seen: 1 }),
            }
        }
        self.known.retain(|k| walk - k.last <= KEEP_WALKS);
        if self.known.len() > MAX_KNOWN {
            // Forget the least recently seen.
            let mut lasts: Vec<u32> = self.known.iter().map(|k| k.last).collect();
            lasts.sort_unstable();
            let cut = lasts[self.known.len() - MAX_KNOWN];
            self.known.retain(|k| k.last > cut || k.last == walk);
        }
    }

    /// Is this frame worth reading ahead? Seen in more than one walk (a frame that stays, or
    /// a slot of the data stack that calls keep reusing), or in the last walk.
    fn wanted(&self, k: &Known) -> bool {
        k.seen >= 2 || k.last == self.walks
    }
}

/// One frame of the chain, decoded from its bytes.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A Python frame whose code pointer has not been checked yet.
    Frame(FrameRef),
    /// A shim or entry frame (not Python code), at this address.
    Shim(u64),
}

impl Step {
    fn addr(&self) -> u64 {
        match self {
            Step::Frame(f) => f.addr,
            Step::Shim(a) => *a,
        }
    }
}

/// Buffers kept from walk to walk so that the steady state allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    ranges: Vec<(u64, usize)>,
    /// Prefetched regions: address, length, offset in `buf`, bytes of it read.
    regions: Vec<Region>,
    buf: Vec<u8>,
    block: Vec<u8>,
    steps: Vec<Step>,
    visited: Vec<u64>,
    codes: Vec<u64>,
    headers: Vec<u8>,
}

/// Memory read in the first call: `[lo, lo + len)`, at `at` in the buffer, of which the first
/// `valid` bytes were read.
#[derive(Debug, Clone, Copy)]
struct Region {
    lo: u64,
    len: usize,
    at: usize,
    valid: usize,
}

/// Group the recently seen frames into ranges to read (into `regions`, `at`/`valid` unset).
/// A range holding only frames seen once, in the last walk, is left out unless it holds that
/// walk's innermost frame: such a frame is usually a coroutine's that will not be on the
/// next stack.
fn plan_regions(hint: &Hint, span: u64, regions: &mut Vec<Region>) {
    regions.clear();
    let innermost = hint.innermost;
    if innermost == 0 {
        return;
    }
    let mut wanted = hint.known.iter().filter(|k| hint.wanted(k)).peekable();
    while let Some(first) = wanted.next() {
        let lo = first.addr;
        let mut hi = lo + span;
        let mut stays = first.seen >= 2;
        while let Some(k) = wanted.next_if(|k| k.addr <= hi + CLUSTER_GAP && k.addr + span - lo <= MAX_REGION) {
            hi = k.addr + span;
            stays |= k.seen >= 2;
        }
        let holds_innermost = (lo..hi).contains(&innermost);
        if stays || holds_innermost {
            let grow = if holds_innermost { GROWTH } else { 0 };
            regions.push(Region { lo, len: (hi + grow - lo) as usize, at: 0, valid: 0 });
        }
    }
    // The extended range may run past the end of a mapping, which stops the call: last.
    if let Some(k) = regions.iter().position(|r| (r.lo..r.lo + r.len as u64).contains(&innermost)) {
        let r = regions.remove(k);
        regions.push(r);
    }
}

impl StackReader {
    /// A thread's stack, innermost first: frame references in `refs` and printable frames in
    /// `frames` (both cleared first; same frames as [`super::walk`] + [`StackReader::frame`]).
    pub fn sample_stack<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        tstate: u64,
        refs: &mut Vec<FrameRef>,
        frames: &mut Vec<StackFrame>,
    ) -> Result<()> {
        refs.clear();
        frames.clear();
        self.generation += 1;
        let mut hint = self.hints.remove(&tstate).unwrap_or_default();
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.walk_into(r, tstate, &mut hint, &mut scratch, refs, frames);
        self.scratch = scratch;
        // Only where to look: kept even after a torn walk.
        if self.hints.len() >= 4096 {
            self.hints.clear();
        }
        self.hints.insert(tstate, hint);
        result
    }

    fn walk_into<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        tstate: u64,
        hint: &mut Hint,
        s: &mut Scratch,
        refs: &mut Vec<FrameRef>,
        frames: &mut Vec<StackFrame>,
    ) -> Result<()> {
        let f = r.layout().frame;
        let span = frame_span(r);

        // 1. The current-frame pointer, then where the previous frames were.
        s.ranges.clear();
        let (head_at, cframe_spec) = match f.chain {
            FrameChain::Objects { tstate_frame } => (tstate + tstate_frame, false),
            FrameChain::Direct { tstate_current_frame } => (tstate + tstate_current_frame, false),
            FrameChain::CFrame { tstate_cframe, .. } => (tstate + tstate_cframe, hint.cframe != 0),
        };
        s.ranges.push((head_at, 8));
        if let (true, FrameChain::CFrame { current_frame, .. }) = (cframe_spec, f.chain) {
            s.ranges.push((hint.cframe + current_frame, 8));
        }
        plan_regions(hint, span as u64, &mut s.regions);
        let mut at = 8 * s.ranges.len();
        for region in &mut s.regions {
            region.at = at;
            at += region.len;
            s.ranges.push((region.lo, region.len));
        }
        s.buf.resize(at, 0);
        let spec_cframe = hint.cframe;
        let n = r.memory().read_many(&s.ranges, &mut s.buf)?;
        for region in &mut s.regions {
            region.valid = n.saturating_sub(region.at).min(region.len);
        }
        let word_at = |buf: &[u8], at: usize| le::u64(buf, at as u64);
        let checked_ptr = |addr: u64, p: u64| -> Result<u64> {
            if p != 0 && !plausible_pointer(p) {
                return Err(Error::invalid(addr, format!("{p:#x} is not a pointer")));
            }
            Ok(p)
        };
        let head = checked_ptr(head_at, word_at(&s.buf, 0)?)?;
        let mut frame = match f.chain {
            FrameChain::CFrame { current_frame, .. } => {
                hint.cframe = head;
                if head == 0 {
                    return Ok(());
                }
                if cframe_spec && head == spec_cframe && n >= 16 {
                    checked_ptr(head + current_frame, word_at(&s.buf, 8)?)?
                } else {
                    r.ptr(head + current_frame)?
                }
            }
            _ => head,
        };

        // 2. Follow the chain.
        s.steps.clear();
        s.visited.clear();
        let mut seen_set: Option<HashSet<u64>> = None;
        while frame != 0 {
            let looped = match &mut seen_set {
                Some(set) => !set.insert(frame),
                None => s.visited.contains(&frame),
            };
            if looped || s.visited.len() >= MAX_FRAMES {
                return Err(Error::invalid(frame, "frame chain loops or is too deep"));
            }
            s.visited.push(frame);
            if seen_set.is_none() && s.visited.len() > 64 {
                seen_set = Some(s.visited.iter().copied().collect());
            }
            let block: &[u8] = match prefetched(&s.regions, &s.buf, frame, span) {
                Some(b) => b,
                None => {
                    s.block.resize(span, 0);
                    r.memory().read(frame, &mut s.block)?;
                    &s.block
                }
            };
            let shim = match f.owner {
                Some((at, first_non_python)) => le::u8(block, at)? >= first_non_python,
                None => false,
            };
            if shim {
                s.steps.push(Step::Shim(frame));
            } else if let Some(fr) = decode_frame_unchecked(r, frame, block) {
                s.steps.push(Step::Frame(fr));
            }
            frame = le::u64(block, f.back)?;
            if frame != 0 && !plausible_pointer(frame) {
                return Err(Error::invalid(frame, "frame back pointer is not a pointer"));
            }
        }
        hint.update(&s.visited);

        // 3. Every code object's header, in one call.
        s.codes.clear();
        for step in &s.steps {
            if let Step::Frame(fr) = step {
                if !s.codes.contains(&fr.code) {
                    s.codes.push(fr.code);
                }
            }
        }
        let hs = code_header_span(r);
        s.ranges.clear();
        s.ranges.extend(s.codes.iter().map(|c| (*c, hs)));
        s.headers.resize(hs * s.codes.len(), 0);
        let read = if s.codes.is_empty() { 0 } else { r.memory().read_many(&s.ranges, &mut s.headers).unwrap_or(0) };
        let ob_type = r.layout().object.ob_type as usize;
        for i in 0..s.codes.len() {
            let code = s.codes[i];
            // Is it a code object? (As `walk`: an unreadable type is an error, another type
            // is a frame that runs no Python code.)
            let (is_code, ident) = if (i + 1) * hs <= read {
                let header = &s.headers[i * hs..(i + 1) * hs];
                let tp = word_at(header, ob_type)?;
                if tp == 0 {
                    return Err(Error::invalid(code + ob_type as u64, "NULL object pointer"));
                }
                checked_ptr(code + ob_type as u64, tp)?;
                (r.type_info(tp)?.name == "code", Some(identity(r, header)?))
            } else {
                (r.type_name(code)? == "code", None)
            };
            if !is_code {
                s.codes[i] = 0;
                continue;
            }
            let ident = match ident {
                Some(ident) => ident,
                None => identity(r, &r.bytes(code, hs)?)?,
            };
            self.entry_with(r, code, ident)?;
            let generation = self.generation;
            if let Some(e) = self.codes.get_mut(&code) {
                e.checked = generation;
            }
        }

        // 4. A stack only if the walk reached the bottom of the thread's stack.
        self.check_bottom(r, tstate, hint, s)?;

        // 5. The frames whose code is code, innermost first, but for interpreter plumbing
        // (`SHIM_FILES`); a shim marks the frame above it as called from C.
        for step in &s.steps {
            match step {
                Step::Frame(fr) => {
                    if s.codes.contains(&fr.code) && !SHIM_FILES.contains(&&*self.codes[&fr.code].file) {
                        refs.push(*fr);
                    }
                }
                Step::Shim(_) => {
                    if f.entry == EntryMarker::ShimBelow {
                        if let Some(last) = refs.last_mut() {
                            last.entered_from_c = Some(true);
                        }
                    }
                }
            }
        }
        for fr in refs.iter() {
            frames.push(self.frame_of_entry(r, fr));
        }
        Ok(())
    }
}

impl StackReader {
    /// Did the walk reach the bottom of the thread's stack, as this version marks it? A chain
    /// cut short (a generator or coroutine frame that yielded while we followed it: its link to
    /// its caller is cleared) is [`Error::Incomplete`], never a stack.
    fn check_bottom<M: Memory>(&mut self, r: &ObjectReader<M>, tstate: u64, hint: &mut Hint, s: &Scratch) -> Result<()> {
        let Some(&last) = s.visited.last() else { return Ok(()) }; // no Python frames at all
        let bottom = s.steps.last().filter(|step| step.addr() == last);
        match r.layout().frame.bottom {
            StackBottom::NotGenerator => match bottom {
                Some(Step::Frame(fr)) if s.codes.contains(&fr.code) => {
                    if self.codes[&fr.code].flags & CO_GENERATOR_LIKE != 0 {
                        return Err(Error::Incomplete("the walk ended at a generator or coroutine frame (it yielded while read)"));
                    }
                    Ok(())
                }
                _ => Err(Error::Incomplete("the walk ended at a frame that runs no code")),
            },
            StackBottom::EntryFrame => match bottom {
                Some(Step::Shim(_)) => Ok(()),
                _ => Err(Error::Incomplete("the walk did not end at the thread's entry frame")),
            },
            StackBottom::BaseFrame { tstate_base_frame } => {
                let base = match hint.base_frame {
                    Some(b) => b,
                    None => {
                        let b = r.ptr(tstate + tstate_base_frame)?;
                        hint.base_frame = Some(b);
                        b
                    }
                };
                if last == base {
                    Ok(())
                } else {
                    Err(Error::Incomplete("the walk did not reach the thread's base frame"))
                }
            }
        }
    }
}

/// The bytes of the frame at `addr`, when the first call read them.
fn prefetched<'a>(regions: &[Region], buf: &'a [u8], addr: u64, span: usize) -> Option<&'a [u8]> {
    regions.iter().find_map(|r| {
        let off = addr.checked_sub(r.lo)? as usize;
        (off + span <= r.valid).then(|| &buf[r.at + off..r.at + off + span])
    })
}

#[cfg(test)]
mod tests {
    use super::super::{walk, StackReader};
    use crate::python::layout::{EntryMarker, FrameChain, InstrPointer, StackBottom};
    use std::cell::Cell;

    use crate::process::memory::{FakeMemory, Memory, ReadError};
    use crate::python::reader::tests::Heap;
    use crate::python::reader::ObjectReader;

    /// Fake frames and code objects in one version's layout.
    struct Stack {
        h: Heap,
        code_type: u64,
        tstate: u64,
        cframe: u64,
        /// The data stack (3.11+) or a heap area (frame objects).
        area: u64,
    }

    impl Stack {
        fn new(minor: u8) -> Stack {
            let mut h = Heap::new(minor);
            let code_type = h.new_type("code", 0, 256);
            let tstate = h.reserve(512);
            let cframe = h.reserve(64);
            let area = h.reserve(64 * 1024);
            let mut s = Stack { h, code_type, tstate, cframe, area };
            if let FrameChain::CFrame { tstate_cframe, .. } = s.h.layout.frame.chain {
                s.h.write_u64(s.tstate + tstate_cframe, s.cframe);
            }
            s
        }

        fn code(&mut self, name: &str, file: &str, first_line: i64) -> u64 {
            let c = self.h.layout.code;
            let code = self.h.object(self.code_type, 256);
            let (n, f) = (self.h.str(name), self.h.str(file));
            self.h.write_u64(code + c.name, n);
            self.h.write_u64(code + c.filename, f);
            if let Some(q) = c.qualname {
                let q_str = self.h.str(&format!("Q.{name}"));
                self.h.write_u64(code + q, q_str);
            }
            self.h.write(code + c.firstlineno, &(first_line as i32).to_le_bytes());
            code
        }

        /// Write a frame at `at` running `code` (None: a shim), called by `back`.
        fn frame(&mut self, at: u64, code: Option<u64>, back: u64) {
            let f = self.h.layout.frame;
            self.h.write(at, &[0u8; 96]);
            self.h.write_u64(at + f.back, back);
            if let Some((owner, first_non_python)) = f.owner {
                self.h.write(at + owner, &[if code.is_some() { 0 } else { first_non_python }]);
            }
            let code = code.unwrap_or(0);
            self.h.write_u64(at + f.code, code);
            match f.instr {
                InstrPointer::Lasti { offset, .. } => self.h.write(at + offset, &4i32.to_le_bytes()),
                InstrPointer::Pointer { offset } => {
                    let start = self.h.layout.code.code_adaptive.unwrap();
                    self.h.write_u64(at + offset, code + start + 6);
                }
            }
            if let EntryMarker::Flag { offset } = f.entry {
                self.h.write(at + offset, &[1]);
            }
        }

        /// The frame a thread's chain ends at, as the version marks it (an entry shim from
        /// 3.12, the base frame the thread state points at from 3.15); 0 where a chain just
        /// ends. `area` is where frames are.
        fn bottom(&mut self, area: u64) -> u64 {
            let at = area + 0x700;
            match self.h.layout.frame.bottom {
                StackBottom::NotGenerator => 0,
                StackBottom::EntryFrame => {
                    self.frame(at, None, 0);
                    at
                }
                StackBottom::BaseFrame { tstate_base_frame } => {
                    self.frame(at, None, 0);
                    self.h.write_u64(self.tstate + tstate_base_frame, at);
                    at
                }
            }
        }

        fn set_top(&mut self, frame: u64) {
            match self.h.layout.frame.chain {
                FrameChain::Objects { tstate_frame } => self.h.write_u64(self.tstate + tstate_frame, frame),
                FrameChain::Direct { tstate_current_frame } => self.h.write_u64(self.tstate + tstate_current_frame, frame),
                FrameChain::CFrame { current_frame, .. } => self.h.write_u64(self.cframe + current_frame, frame),
            }
        }

        /// The sampler's walk and the plain walk agree; the frames' function names.
        fn both(&self, fast: &mut StackReader) -> Vec<String> {
            let r: ObjectReader<&FakeMemory> = self.h.reader();
            let (mut refs, mut frames) = (Vec::new(), Vec::new());
            fast.sample_stack(&r, self.tstate, &mut refs, &mut frames).unwrap();
            let walked = walk(&r, self.tstate).unwrap();
            let mut plain = StackReader::new();
            let expected: Vec<_> = walked.iter().map(|f| plain.frame(&r, f).unwrap()).collect();
            assert_eq!(refs, walked);
            assert_eq!(frames, expected);
            frames.iter().map(|f| f.function.to_string()).collect()
        }
    }

    /// Counts the calls made to the memory (one per `read`, one per `read_many`).
    struct Counting<'a>(&'a FakeMemory, Cell<usize>);

    impl Memory for Counting<'_> {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            self.1.set(self.1.get() + 1);
            self.0.read(addr, buf)
        }
        fn read_many(&self, ranges: &[(u64, usize)], buf: &mut [u8]) -> Result<usize, ReadError> {
            self.1.set(self.1.get() + 1);
            self.0.read_many(ranges, buf)
        }
    }

    fn names(v: &[&str], minor: u8) -> Vec<String> {
        v.iter().map(|n| if minor >= 11 { format!("Q.{n}") } else { n.to_string() }).collect()
    }

    #[test]
    fn sampled_walk_follows_the_chain_as_it_changes() {
        for minor in [9u8, 10, 11, 12, 13, 14, 15] {
            let mut s = Stack::new(minor);
            let (main, run, step, leaf) = (
                s.code("main", "/app/m.py", 1),
                s.code("run", "/app/m.py", 10),
                s.code("step", "/app/m.py", 20),
                s.code("leaf", "/app/m.py", 30),
            );
            let a = s.area;
            let shims = s.h.layout.frame.owner.is_some();
            // main <- run <- step <- leaf, with a shim under `run` where the version has them,
            // and the thread's entry (or base) frame under `main`.
            let entry = s.bottom(a);
            s.frame(a, Some(main), entry);
            let below_run = if shims {
                s.frame(a + 0x100, None, a);
                a + 0x100
            } else {
                a
            };
            s.frame(a + 0x200, Some(run), below_run);
            s.frame(a + 0x300, Some(step), a + 0x200);
            s.frame(a + 0x400, Some(leaf), a + 0x300);
            s.set_top(a + 0x400);
            let mut fast = StackReader::new();
            assert_eq!(s.both(&mut fast), names(&["leaf", "step", "run", "main"], minor));
            // Returns and new calls reuse the same slots: the walk follows the new chain.
            s.frame(a + 0x300, Some(leaf), a + 0x200);
            s.set_top(a + 0x300);
            assert_eq!(s.both(&mut fast), names(&["leaf", "run", "main"], minor));
            // Deeper than before, past where the last walk went, and through a frame far away
            // (a coroutine's frame on the heap).
            let far = s.h.reserve(256);
            s.frame(far, Some(step), a + 0x300);
            s.frame(a + 0x500, Some(run), far);
            s.frame(a + 0x600, Some(leaf), a + 0x500);
            s.set_top(a + 0x600);
            assert_eq!(s.both(&mut fast), names(&["leaf", "run", "step", "leaf", "run", "main"], minor));
            assert_eq!(s.both(&mut fast), names(&["leaf", "run", "step", "leaf", "run", "main"], minor));
            // The same stack again: two calls (frames, then code headers), nothing else.
            let counting = Counting(&s.h.mem, Cell::new(0));
            let r = ObjectReader::new(&counting, s.h.layout);
            let (mut refs, mut frames) = (Vec::new(), Vec::new());
            fast.sample_stack(&r, s.tstate, &mut refs, &mut frames).unwrap(); // fills the type cache
            counting.1.set(0);
            fast.sample_stack(&r, s.tstate, &mut refs, &mut frames).unwrap();
            assert_eq!(counting.1.get(), 2, "Python 3.{minor}");
            assert_eq!(frames.len(), 6);
            // A code object's address reused by another code object: new names at once.
            let c = s.h.layout.code;
            let other = s.h.str("other");
            s.h.write_u64(leaf + c.name, other);
            if let Some(q) = c.qualname {
                let q_other = s.h.str("Q.other");
                s.h.write_u64(leaf + q, q_other);
            }
            assert_eq!(s.both(&mut fast), names(&["other", "run", "step", "other", "run", "main"], minor));
            // A frame whose code pointer is not a code object is skipped, as `walk` skips it.
            let not_code = s.h.str("not code");
            s.frame(a + 0x600, Some(not_code), a + 0x500);
            assert_eq!(s.both(&mut fast), names(&["run", "step", "other", "run", "main"], minor));
            // A chain cut short: a generator's frame whose link to its caller was cleared (it
            // yielded while we read) is not a stack, whatever the version marks.
            let generator = s.code("gen", "/app/m.py", 40);
            s.h.write(generator + c.flags, &0x20u32.to_le_bytes());
            s.frame(a + 0x600, Some(generator), 0);
            let r = s.h.reader();
            let err = fast.sample_stack(&r, s.tstate, &mut Vec::new(), &mut Vec::new()).unwrap_err();
            assert!(matches!(err, crate::python::reader::Error::Incomplete(_)), "Python 3.{minor}: {err}");
            // The same frame called by the stack: a stack.
            s.frame(a + 0x600, Some(generator), a + 0x500);
            assert_eq!(s.both(&mut fast)[0], names(&["gen"], minor)[0]);
            // A chain that loops is an error, not an endless walk.
            s.frame(a, Some(main), a + 0x600);
            let r = s.h.reader();
            let err = fast.sample_stack(&r, s.tstate, &mut Vec::new(), &mut Vec::new()).unwrap_err();
            assert!(err.to_string().contains("loops"), "{err}");
            // Nothing running.
            s.set_top(0);
            assert_eq!(s.both(&mut fast), Vec::<String>::new());
        }
    }
}
