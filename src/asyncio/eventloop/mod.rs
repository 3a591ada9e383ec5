//! Event-loop objects: which kind of loop a running-loop pointer is, and its figures (ready
//! queue, timers, registered file descriptors).
//!
//! Built on the object reader; knows asyncio's (and later uvloop's) attribute names, nothing
//! about threads, the CLI or output.

mod selector;
mod uvloop;

use serde::Serialize;

use crate::process::memory::Memory;
use crate::python::reader::{ObjectReader, Result};

pub use selector::{SelectorLoop, SelectorObjects};
pub use uvloop::{UvLoop, UvObjects};

/// The families of event loop loopspy can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    /// `when` of the earliest live timer that is already due and waits in the ready queue
    /// (asyncio moves due timers there; while a callback blocks, they wait there).
    pub ready_timer: Option<f64>,
    /// Cancelled timers seen while looking for the earliest live one.
    pub cancelled_timers_seen: u64,
    /// File descriptors registered with the selector.
    pub fds: Option<u64>,
    /// Class of the selector (`EpollSelector`, ...).
    pub selector: Option<String>,
    /// The loop's own cached "now" (`loop.time()` seconds) when it keeps one: libuv updates
    /// it once per loop iteration (and uvloop's `loop.time()` does too), so `now - loop_time`
    /// is a lower bound of how long the current iteration has been running.
    pub loop_time: Option<f64>,
    /// The loop's iteration counter when it keeps one (libuv's `loop_count`).
    pub iteration: Option<u64>,
    /// The timer figures (`earliest_timer`, `ready_timer`) are complete. False when the
    /// timer heap or the ready queue kept changing while they were read (hundreds of timeouts
    /// firing at once), too many cancelled timers hid the earliest live one, or loopspy was
    /// kept off the CPU while it read them (more than 2 ms, three times): the loop's
    /// lag is then unknown for this look, while its state, stack and ready depth stand.
    pub timers_known: bool,
}

impl LoopFigures {
    /// The timer figures of this look cannot be trusted (see `timers_known`).
    pub fn forget_timers(&mut self) {
        self.earliest_timer = None;
        self.ready_timer = None;
        self.timers_known = false;
    }

    /// A timer due before `floor` (the target's start) was read from memory that no longer
    /// held it: the timer figures of this look are unknown, not a lag of hours.
    pub fn drop_timers_before(&mut self, floor: f64) {
        let torn = |w: Option<f64>| w.is_some_and(|w| !w.is_finite() || w < floor);
        if torn(self.earliest_timer) || torn(self.ready_timer) {
            self.forget_timers();
        }
    }
}

/// The loop's class, named as users know it: uvloop's public `uvloop.Loop` (a Python
/// subclass whose `tp_name` is just `Loop`) is shown with its module.
fn display_name(name: &str, kind: LoopKind) -> String {
    match (kind, name) {
        (LoopKind::Uvloop, "Loop") => "uvloop.Loop".to_string(),
        _ => name.to_string(),
    }
}

/// Classify the object a thread names as its running loop: its kind and class name, or
/// `None` (with the class name) for a loop class loopspy cannot read.
pub fn kind_of<M: Memory>(r: &ObjectReader<M>, event_loop: u64) -> Result<(Option<LoopKind>, String)> {
    let info = r.type_info_of(event_loop)?;
    let kind = if r.is_subclass_by_name(info.addr, "uvloop.loop.Loop")? {
        Some(LoopKind::Uvloop)
    } else if r.is_subclass_by_name(info.addr, "BaseEventLoop")? {
        Some(LoopKind::Selector)
    } else {
        None
    };
    let name = match kind {
        Some(k) => display_name(&info.name, k),
        None => info.name.clone(),
    };
    Ok((kind, name))
}

impl LoopFigures {
    /// `when` of the most overdue timer, wherever it waits (heap head or ready queue).
    pub fn most_overdue(&self) -> Option<f64> {
        match (self.earliest_timer, self.ready_timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The objects of one loop, watched so that sampling it costs a few reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopObjects {
    Selector(SelectorObjects),
    Uvloop(UvObjects),
}

/// Readers for every kind of loop, with their caches.
#[derive(Debug, Default)]
pub struct LoopReaders {
    pub selector: SelectorLoop,
    pub uv: UvLoop,
}

impl LoopReaders {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn resolve<M: Memory>(&mut self, r: &ObjectReader<M>, kind: LoopKind, event_loop: u64) -> Result<LoopObjects> {
        Ok(match kind {
            LoopKind::Selector => LoopObjects::Selector(self.selector.resolve(r, event_loop)?),
            LoopKind::Uvloop => LoopObjects::Uvloop(self.uv.resolve(r, event_loop)?),
        })
    }

    /// Ready depth, timers and (uvloop) the loop's clock, reading the caller's `also` words in
    /// the same system call (into `also_words`). `scan_ready`: also look for due timers that
    /// wait in the ready queue (for a loop busy in a callback).
    pub fn quick<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        event_loop: u64,
        o: &mut LoopObjects,
        also: &[u64],
        also_words: &mut Vec<u64>,
        scan_ready: bool,
    ) -> Result<LoopFigures> {
        match o {
            LoopObjects::Selector(s) => self.selector.quick(r, event_loop, s, also, also_words, scan_ready),
            LoopObjects::Uvloop(u) => self.uv.quick(r, event_loop, u, also, also_words),
        }
    }

    /// Everything one look shows: the figures, the selector's class and its descriptors.
    pub fn figures<M: Memory>(&mut self, r: &ObjectReader<M>, kind: LoopKind, event_loop: u64) -> Result<LoopFigures> {
        let mut o = self.resolve(r, kind, event_loop)?;
        let mut figures = self.quick(r, event_loop, &mut o, &[], &mut Vec::new(), true)?;
        self.describe(r, &o, &mut figures)?;
        Ok(figures)
    }

    /// Add the selector's class and the watched descriptors to `figures` (one-off looks).
    pub fn describe<M: Memory>(&self, r: &ObjectReader<M>, o: &LoopObjects, figures: &mut LoopFigures) -> Result<()> {
        match o {
            LoopObjects::Selector(s) => (figures.selector, figures.fds) = self.selector.selector_facts(r, s)?,
            LoopObjects::Uvloop(u) => figures.fds = Some(self.uv.fds(r, u)?),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::LoopFigures;

    fn figures(earliest: Option<f64>, ready: Option<f64>) -> LoopFigures {
        LoopFigures {
            ready: 1,
            timers: 1,
            earliest_timer: earliest,
            ready_timer: ready,
            cancelled_timers_seen: 0,
            fds: None,
            selector: None,
            loop_time: None,
            iteration: None,
            timers_known: true,
        }
    }

    #[test]
    fn a_timer_due_before_the_process_started_is_a_torn_read() {
        let mut f = figures(Some(0.0), None);
        f.drop_timers_before(8000.0);
        assert!(!f.timers_known && f.earliest_timer.is_none());
        let mut f = figures(Some(8100.0), Some(f64::NAN));
        f.drop_timers_before(8000.0);
        assert!(!f.timers_known);
        let mut f = figures(Some(8100.0), Some(8050.5));
        f.drop_timers_before(8000.0);
        assert!(f.timers_known && f.ready_timer == Some(8050.5));
    }
}
