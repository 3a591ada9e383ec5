//! A minimal walker over a thread's Python frames: which code runs in each frame, and the
//! object in a frame's first local slot. py-spy gives us the printable stack; this module
//! exists to reach objects (`self` of `Handle._run`) that a printable stack cannot give.

use std::collections::HashSet;

use crate::layout::{EntryMarker, FrameChain};
use crate::memory::Memory;
use crate::reader::{Error, ObjectReader, Result};

/// Deepest stack walked.
pub const MAX_FRAMES: usize = 1024;

/// One frame: its address and its code object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    pub addr: u64,
    pub code: u64,
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
    let mut out: Vec<FrameRef> = Vec::new();
    let mut seen = HashSet::new();
    while frame != 0 {
        if !seen.insert(frame) || seen.len() > MAX_FRAMES {
            return Err(Error::invalid(frame, "frame chain loops or is too deep"));
        }
        let shim = match f.owner {
            Some((at, first_non_python)) => r.u8(frame + at)? >= first_non_python,
            None => false,
        };
        if shim {
            // The Python frame just inside a shim was called from C.
            if f.entry == EntryMarker::ShimBelow {
                if let Some(last) = out.last_mut() {
                    last.entered_from_c = Some(true);
                }
            }
        } else {
            let code = r.u64(frame + f.code)? & !f.ref_tag_mask;
            if code != 0 && r.type_name(code)? == "code" {
                let entered_from_c = match f.entry {
                    EntryMarker::Unknown => None,
                    EntryMarker::Flag { offset } => Some(r.u8(frame + offset)? != 0),
                    EntryMarker::ShimBelow => Some(false),
                };
                out.push(FrameRef { addr: frame, code, entered_from_c });
            }
        }
        frame = r.ptr(frame + f.back)?;
    }
    Ok(out)
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
    if raw == 0 || !crate::reader::plausible_pointer(raw) {
        return Err(Error::invalid(frame.addr, "frame local is not an object"));
    }
    Ok(raw)
}
