//! Event-loop objects: which kind of loop a running-loop pointer is, and its figures (ready
//! queue, timers, registered file descriptors).
//!
//! Built on the object reader; knows asyncio's (and later uvloop's) attribute names, nothing
//! about threads, the CLI or output.

mod selector;

use serde::Serialize;

use crate::memory::Memory;
use crate::reader::{ObjectReader, Result};

pub use selector::SelectorLoop;

/// The families of event loop loopspy can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopKind {
    /// asyncio's `BaseEventLoop` family (`_UnixSelectorEventLoop` and subclasses).
    Selector,
    /// `uvloop.Loop`.
    Uvloop,
}

/// What one read of a loop's own objects says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoopFigures {
    /// `len(loop._ready)`: callbacks waiting to run.
    pub ready: u64,
    /// `len(loop._scheduled)`: timers in the heap, cancelled ones included.
    pub timers: u64,
    /// `when` (in `loop.time()` seconds) of the earliest timer that is not cancelled.
    pub earliest_timer: Option<f64>,
    /// Cancelled timers seen while looking for the earliest live one.
    pub cancelled_timers_seen: u64,
    /// File descriptors registered with the selector.
    pub fds: Option<u64>,
    /// Class of the selector (`EpollSelector`, ...).
    pub selector: Option<String>,
}

/// Classify the object a thread names as its running loop.
pub fn kind_of<M: Memory>(r: &ObjectReader<M>, event_loop: u64) -> Result<(LoopKind, String)> {
    let info = r.type_info_of(event_loop)?;
    let name = info.name.clone();
    if name == "uvloop.Loop" || r.is_subclass_by_name(info.addr, "uvloop.Loop")? {
        return Ok((LoopKind::Uvloop, name));
    }
    if r.is_subclass_by_name(info.addr, "BaseEventLoop")? {
        return Ok((LoopKind::Selector, name));
    }
    Err(crate::reader::Error::invalid(event_loop, format!("event loop class {name} is not one loopspy can read")))
}
