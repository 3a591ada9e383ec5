//! A thread's Python frames, read directly: which code runs in each frame and at which line,
//! whether C code called it, and the object in a frame's first local slot.
//!
//! py-spy prints stacks for `dump`; this walker serves the sampler (one thread, cheaply:
//! one read per frame plus one per code object, with names and line tables cached) and reaches
//! what a printable stack cannot (`self` of `Handle._run`). The two are cross-checked by a
//! test on every interpreter.

use std::collections::HashSet;
use std::sync::Arc;

use crate::process::memory::Memory;
use crate::python::layout::{EntryMarker, FrameChain, InstrPointer, StackTop};
use crate::python::lines;
use crate::python::reader::{le, Error, FastMap, ObjectReader, Result};

mod sampled;

/// File names of code objects that are interpreter plumbing, not Python source: 3.13+'s
/// `__init__` clean-up shim (frames pushed when a class's `__init__` is called) and the
/// `<shim>` entry frames. Frames running them are not shown.
pub const SHIM_FILES: &[&str] = &["", "<shim>", "__init__"];

/// Deepest stack walked. Real programs recurse deeply (parsers, ORMs, `sys.setrecursionlimit`);
/// a walk must reach the bottom to be trusted, so the limit only stops a chain gone wrong.
pub const MAX_FRAMES: usize = 100_000;
/// Largest line table read.
const MAX_LINETABLE: u64 = 1 << 20;

/// Is this file part of Python itself or an installed package (not the application)?
pub fn is_library_file(path: &str) -> bool {
    if path.starts_with("<frozen") || path.contains("/site-packages/") || path.contains("/dist-packages/") {
        return true;
    }
    is_stdlib_file(path)
}

/// `.../lib/python3.X/...` (or lib64), but not its site-packages: the standard library.
pub fn is_stdlib_file(path: &str) -> bool {
    if path.contains("/site-packages/") || path.contains("/dist-packages/") {
        return false;
    }
    for marker in ["/lib/python3.", "/lib64/python3."] {
        if let Some(at) = path.find(marker) {
            let rest = &path[at + marker.len()..];
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && rest[digits..].starts_with('/') {
                return true;
            }
        }
    }
    false
}

/// One frame: its address, its code object, where it is in that code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    pub addr: u64,
    pub code: u64,
    /// Byte offset of the current instruction in the code's bytecode, when readable.
    pub instr: Option<i64>,
    /// Whether C code called this frame (rather than another Python frame); `None` on
    /// versions whose frames do not say.
    pub entered_from_c: Option<bool>,
}

/// Names of a code object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    pub name: String,
    /// `co_qualname` on 3.11+; the plain name before.
    pub qualname: String,
    pub filename: String,
}

/// A Python frame for display: function (qualified name where the version has one), file,
/// line (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct StackFrame {
    pub function: Arc<str>,
    pub file: Arc<str>,
    pub line: i32,
}

/// The thread's frames, innermost first. Frames that are not running Python code (C-stack
/// shims) are skipped.
pub fn walk<M: Memory>(r: &ObjectReader<M>, tstate: u64) -> Result<Vec<FrameRef>> {
    let f = r.layout().frame;
    let mut frame = match f.chain {
        FrameChain::Objects { tstate_frame } => r.ptr(tstate + tstate_frame)?,
        FrameChain::CFrame { tstate_cframe, current_frame } => {
            let cframe = r.ptr(tstate + tstate_cframe)?;
            if cframe == 0 {
                return Ok(Vec::new());
            }
            r.ptr(cframe + current_frame)?
        }
        FrameChain::Direct { tstate_current_frame } => r.ptr(tstate + tstate_current_frame)?,
    };
    let span = frame_span(r);
    let mut out: Vec<FrameRef> = Vec::new();
    let mut seen = HashSet::new();
    while frame != 0 {
        if !seen.insert(frame) || seen.len() > MAX_FRAMES {
            return Err(Error::invalid(frame, "frame chain loops or is too deep"));
        }
        let block = r.bytes(frame, span)?;
        let shim = match f.owner {
            Some((at, first_non_python)) => le::u8(&block, at)? >= first_non_python,
            None => false,
        };
        if shim {
            // The Python frame just inside a shim was called from C.
            if f.entry == EntryMarker::ShimBelow {
                if let Some(last) = out.last_mut() {
                    last.entered_from_c = Some(true);
                }
            }
        } else if let Some(f) = decode_frame(r, frame, &block)? {
            out.push(f);
        }
        frame = le::u64(&block, f.back)?;
        if frame != 0 && !crate::python::reader::plausible_pointer(frame) {
            return Err(Error::invalid(frame, "frame back pointer is not a pointer"));
        }
    }
    Ok(out)
}

/// Bytes to read from a frame to get everything `decode_frame` needs.
pub(crate) fn frame_span<M: Memory>(r: &ObjectReader<M>) -> usize {
    let f = r.layout().frame;
    let instr_at = match f.instr {
        InstrPointer::Lasti { offset, .. } | InstrPointer::Pointer { offset } => offset,
    };
    let mut span = f.back.max(f.code).max(instr_at);
    if let Some((at, _)) = f.owner {
        span = span.max(at);
    }
    if let EntryMarker::Flag { offset } = f.entry {
        span = span.max(offset);
    }
    span as usize + 8
}

/// The frame in `block` (read at `frame`), or `None` when it runs no Python code.
fn decode_frame<M: Memory>(r: &ObjectReader<M>, frame: u64, block: &[u8]) -> Result<Option<FrameRef>> {
    match decode_frame_unchecked(r, frame, block) {
        Some(f) if r.type_name(f.code)? == "code" => Ok(Some(f)),
        _ => Ok(None),
    }
}

/// As [`decode_frame`], without checking that the code pointer points at a code object
/// (the sampler's walk checks all of a stack's code objects in one read).
pub(crate) fn decode_frame_unchecked<M: Memory>(r: &ObjectReader<M>, frame: u64, block: &[u8]) -> Option<FrameRef> {
    let f = r.layout().frame;
    let word = |at: u64| le::u64(block, at).ok();
    let code = word(f.code)? & !f.ref_tag_mask;
    if code == 0 || !crate::python::reader::plausible_pointer(code) {
        return None;
    }
    let entered_from_c = match f.entry {
        EntryMarker::Unknown => None,
        EntryMarker::Flag { offset } => Some(le::u8(block, offset).ok()? != 0),
        EntryMarker::ShimBelow => Some(false),
    };
    let instr = match f.instr {
        InstrPointer::Lasti { offset, unit } => {
            let lasti = le::i32(block, offset).ok()?;
            // -1: the frame has not started; lines::line_at handles negative offsets.
            (lasti >= -1).then(|| lasti as i64 * unit as i64)
        }
        InstrPointer::Pointer { offset } => r
            .layout()
            .code
            .code_adaptive
            .and_then(|start| Some((word(offset)? as i64).wrapping_sub(code.wrapping_add(start) as i64)))
            // prev_instr points just before the code while a frame has not started.
            .filter(|o| *o >= -64 && *o < 1 << 24),
    };
    Some(FrameRef { addr: frame, code, instr, entered_from_c })
}

/// The frame at `addr` (a frame object's or an interpreter frame's address).
pub fn frame_at<M: Memory>(r: &ObjectReader<M>, addr: u64) -> Result<Option<FrameRef>> {
    let block = r.bytes(addr, frame_span(r))?;
    decode_frame(r, addr, &block)
}

/// The object on top of a suspended frame's value stack: what it awaits, when suspended in
/// `await`/`yield from`. `None` when the stack is empty. A NULL entry on top is skipped
/// (3.15 leaves an empty value slot above the awaited object while suspended in `await`).
pub fn stack_top<M: Memory>(r: &ObjectReader<M>, frame: u64) -> Result<Option<u64>> {
    let f = r.layout().frame;
    // The address one past the top entry, and the lowest address the stack may use.
    let (end, floor) = match f.stack_top {
        StackTop::Pointer { offset } => (r.ptr(frame + offset)?, 0),
        StackTop::Depth { base, depth } => {
            let d = r.i32(frame + depth)?;
            if d <= 0 || d > 1 << 16 {
                return Ok(None);
            }
            let base = r.obj_ptr(frame + base)?;
            (base + 8 * d as u64, base)
        }
        StackTop::Index { offset } => {
            let i = r.i32(frame + offset)?;
            if i <= 0 || i > 1 << 16 {
                return Ok(None);
            }
            (frame + f.localsplus + 8 * i as u64, frame + f.localsplus)
        }
        StackTop::StackPointer { offset } => (r.ptr(frame + offset)?, frame + f.localsplus),
    };
    if end == 0 || end < floor + 8 {
        return Ok(None);
    }
    let depth = if end >= floor + 16 { 2 } else { 1 };
    let words = r.pointer_array(end - 8 * depth, depth as usize)?;
    let top = words.iter().rev().map(|w| w & !f.ref_tag_mask).find(|w| *w != 0).unwrap_or(0);
    Ok((top != 0 && crate::python::reader::plausible_pointer(top)).then_some(top))
}

/// The names of a code object.
pub fn code_info<M: Memory>(r: &ObjectReader<M>, code: u64) -> Result<CodeInfo> {
    let c = r.layout().code;
    let name = r.name(r.obj_ptr(code + c.name)?)?;
    let qualname = match c.qualname {
        Some(off) => r.name(r.obj_ptr(code + off)?)?,
        None => name.clone(),
    };
    let filename = r.str(r.obj_ptr(code + c.filename)?)?.text;
    Ok(CodeInfo { name, qualname, filename })
}

/// The object in local slot `index` of a frame (slot 0 is the first argument, e.g. `self`).
pub fn local<M: Memory>(r: &ObjectReader<M>, frame: &FrameRef, index: u64) -> Result<u64> {
    let f = r.layout().frame;
    let raw = r.u64(frame.addr + f.localsplus + 8 * index)? & !f.ref_tag_mask;
    if raw == 0 || !crate::python::reader::plausible_pointer(raw) {
        return Err(Error::invalid(frame.addr, "frame local is not an object"));
    }
    Ok(raw)
}

/// What we keep about a code object between samples.
#[derive(Debug, Clone)]
struct CodeEntry {
    /// The code object's own pointers to its names and line table, and its first line: if
    /// any changes, the address was reused by another code object.
    identity: Identity,
    /// The [`StackReader`] generation (sampler walk) that last checked the identity.
    checked: u64,
    info: Arc<CodeInfo>,
    function: Arc<str>,
    file: Arc<str>,
    first_line: i32,
    /// `co_flags`.
    flags: u32,
    table: Vec<u8>,
}

/// `[co_filename, co_name, co_qualname or 0, co_linetable, co_firstlineno]` of a code object.
type Identity = [u64; 5];

/// Bytes at the start of a code object that hold its type and its [`Identity`].
fn code_header_span<M: Memory>(r: &ObjectReader<M>) -> usize {
    let (c, o) = (r.layout().code, r.layout().object);
    let end = [o.ob_type + 8, c.filename + 8, c.name + 8, c.qualname.map_or(0, |q| q + 8), c.linetable + 8, c.firstlineno + 4];
    end.into_iter().max().unwrap_or(0) as usize
}

/// The [`Identity`] in a code object's header (`code_header_span` bytes).
fn identity<M: Memory>(r: &ObjectReader<M>, header: &[u8]) -> Result<Identity> {
    let c = r.layout().code;
    let word = |at: u64| le::u64(header, at);
    let qualname = match c.qualname {
        Some(at) => word(at)?,
        None => 0,
    };
    let first_line = le::u32(header, c.firstlineno)?;
    Ok([word(c.filename)?, word(c.name)?, qualname, word(c.linetable)?, first_line as u64])
}

/// Turns frames into printable stacks; caches code objects and computed lines.
#[derive(Debug, Default)]
pub struct StackReader {
    codes: FastMap<u64, CodeEntry>,
    lines: FastMap<(u64, i64), i32>,
    /// Incremented by each sampler walk ([`StackReader::sample_stack`]); a code object checked
    /// in the current generation is not read again by [`StackReader::code_info`].
    generation: u64,
    /// `(code, local name) → slot index`, for the few locals read by name.
    locals: FastMap<(u64, &'static str), Option<u64>>,
    /// Per thread state, the frames the last walk went through (see `sampled`).
    hints: FastMap<u64, sampled::Hint>,
    scratch: sampled::Scratch,
}

impl StackReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names of a code object (cached, revalidated).
    pub fn code_info<M: Memory>(&mut self, r: &ObjectReader<M>, code: u64) -> Result<Arc<CodeInfo>> {
        Ok(self.entry(r, code)?.info.clone())
    }

    fn entry<M: Memory>(&mut self, r: &ObjectReader<M>, code: u64) -> Result<&CodeEntry> {
        if self.generation != 0 && self.codes.get(&code).is_some_and(|e| e.checked == self.generation) {
            // Checked by the walk of this very sample.
            return Ok(&self.codes[&code]);
        }
        let identity = identity(r, &r.bytes(code, code_header_span(r))?)?;
        self.entry_with(r, code, identity)
    }

    /// The entry of a code object whose identity was just read: cached if it matches.
    fn entry_with<M: Memory>(&mut self, r: &ObjectReader<M>, code: u64, identity: Identity) -> Result<&CodeEntry> {
        let c = r.layout().code;
        let fresh = match self.codes.get(&code) {
            Some(e) => e.identity != identity,
            None => true,
        };
        if fresh {
            let info = code_info(r, code)?;
            let first_line = r.i32(code + c.firstlineno)?;
            let flags = r.u32(code + c.flags)?;
            let table = match r.ptr(code + c.linetable)? {
                0 => Vec::new(),
                bytes => {
                    let len = r.var_len(bytes)?;
                    if len > MAX_LINETABLE {
                        return Err(Error::invalid(bytes, "line table too long"));
                    }
                    r.bytes(bytes + r.layout().containers.bytes_data, len as usize)?
                }
            };
            if self.codes.len() > 65_536 {
                self.codes.clear();
                self.lines.clear();
            }
            self.lines.retain(|(c, _), _| *c != code);
            self.locals.retain(|(c, _), _| *c != code);
            let function: Arc<str> = info.qualname.as_str().into();
            let file: Arc<str> = info.filename.as_str().into();
            self.codes.insert(code, CodeEntry { identity, checked: 0, info: Arc::new(info), function, file, first_line, flags, table });
        }
        Ok(&self.codes[&code])
    }

    /// The slot index of local variable `name` in frames running `code` (cached per code
    /// object, whose names never change).
    pub fn local_index<M: Memory>(&mut self, r: &ObjectReader<M>, code: u64, name: &'static str) -> Result<Option<u64>> {
        if let Some(i) = self.locals.get(&(code, name)) {
            return Ok(*i);
        }
        let names = r.obj_ptr(code + r.layout().code.local_names)?;
        let (items, _) = r.tuple_items(names, 4096)?;
        let mut found = None;
        for (i, item) in items.iter().enumerate() {
            if r.str_equals(*item, name)? {
                found = Some(i as u64);
                break;
            }
        }
        if self.locals.len() > 4096 {
            self.locals.clear();
        }
        self.locals.insert((code, name), found);
        Ok(found)
    }

    /// The frame as function, file and line.
    pub fn frame<M: Memory>(&mut self, r: &ObjectReader<M>, f: &FrameRef) -> Result<StackFrame> {
        self.entry(r, f.code)?;
        Ok(self.frame_of_entry(r, f))
    }

    /// The frame, its code object's entry being current.
    fn frame_of_entry<M: Memory>(&mut self, r: &ObjectReader<M>, f: &FrameRef) -> StackFrame {
        let format = r.layout().code.line_format;
        let entry = &self.codes[&f.code];
        let (function, file) = (entry.function.clone(), entry.file.clone());
        // Without a readable instruction, or a table that does not decode, the code's first line.
        let line = match f.instr {
            None => entry.first_line,
            Some(offset) => {
                if let Some(line) = self.lines.get(&(f.code, offset)) {
                    *line
                } else {
                    let entry = &self.codes[&f.code];
                    let line = lines::line_at(format, &entry.table, entry.first_line, offset).unwrap_or(entry.first_line);
                    self.lines.insert((f.code, offset), line);
                    line
                }
            }
        };
        StackFrame { function, file, line }
    }

    /// A thread's stack, innermost first (the sampler's walk: see
    /// [`StackReader::sample_stack`]).
    pub fn stack<M: Memory>(&mut self, r: &ObjectReader<M>, tstate: u64) -> Result<Vec<StackFrame>> {
        let (mut refs, mut frames) = (Vec::new(), Vec::new());
        self.sample_stack(r, tstate, &mut refs, &mut frames)?;
        Ok(frames)
    }
}
