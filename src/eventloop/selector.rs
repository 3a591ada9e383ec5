//! asyncio's own loops (`BaseEventLoop` subclasses): `_ready` deque, `_scheduled` heap of
//! `TimerHandle`s, `_selector._fd_to_key`.

use std::collections::HashMap;

use super::LoopFigures;
use crate::memory::Memory;
use crate::reader::{Error, ObjectReader, Result};

/// Most timers scanned for the earliest live one when the heap's head is cancelled.
pub const MAX_TIMER_SCAN: usize = 100_000;

/// Slot offsets of a `TimerHandle` class.
#[derive(Debug, Clone, Copy)]
struct TimerSlots {
    when: u64,
    cancelled: u64,
}

/// The objects of one stock loop that the figures come from. asyncio creates them once in
/// `BaseEventLoop.__init__` and keeps them for the loop's life (`heapq` works in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorObjects {
    pub ready: u64,
    pub scheduled: u64,
    pub selector: Option<u64>,
}

/// Reads stock asyncio loops; caches per-class slot offsets and the bool singletons.
#[derive(Debug, Default)]
pub struct SelectorLoop {
    timer_slots: HashMap<u64, TimerSlots>,
    bools: HashMap<u64, bool>,
    /// Per timer heap (list), where its item array was at the last sample: where to look
    /// first for the earliest timer (checked against the list's own pointer every time).
    heap_items: HashMap<u64, u64>,
    /// The type of the last earliest timer (`TimerHandle`), to read its type and slots in
    /// one go.
    last_timer_type: Option<u64>,
    buf: Vec<u8>,
}

impl SelectorLoop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Find the loop's objects (instance attribute lookups: done once, not per sample).
    pub fn resolve<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<SelectorObjects> {
        let ready = r.attr(event_loop, "_ready")?;
        let scheduled = r.attr(event_loop, "_scheduled")?;
        let selector = r.getattr(event_loop, "_selector")?.filter(|s| !r.is_none(*s).unwrap_or(true));
        Ok(SelectorObjects { ready, scheduled, selector })
    }

    /// Ready depth and timers: usually three reads. The ready deque's and the timer heap's
    /// headers are read in one call, followed (in the same call) by the first item of the
    /// heap's array where it was last time, which is used only if the heap still points
    /// there; then the earliest timer (type and slots together) and its `when`.
    pub fn quick<M: Memory>(&mut self, r: &ObjectReader<M>, o: &SelectorObjects) -> Result<LoopFigures> {
        let hs = r.list_head_span();
        let guess = self.heap_items.get(&o.scheduled).copied();
        let ranges = [(o.ready, hs), (o.scheduled, hs), (guess.unwrap_or(0), 8)];
        let n_ranges = if guess.is_some() { 3 } else { 2 };
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(2 * hs + 8, 0);
        let result = (|| {
            let got = r.memory().read_many(&ranges[..n_ranges], &mut buf)?;
            if got < 2 * hs {
                // One of the headers did not read: read both alone (failing as they would).
                r.memory().read(o.ready, &mut buf[..hs])?;
                r.memory().read(o.scheduled, &mut buf[hs..2 * hs])?;
            }
            let ready = r.deque_len_in(o.ready, &buf[..hs])?;
            let (len, items) = r.list_head_in(o.scheduled, &buf[hs..2 * hs])?;
            let head = match len {
                0 => None,
                _ if guess == Some(items) && got == 2 * hs + 8 => Some(u64::from_le_bytes(buf[2 * hs..2 * hs + 8].try_into().unwrap())),
                _ => Some(r.u64(items)?),
            };
            if len > 0 {
                self.heap_items.insert(o.scheduled, items);
            }
            let (timers, earliest_timer, cancelled_timers_seen) = match head {
                None => (0, None, 0),
                Some(head) => self.timers_from(r, o.scheduled, len, head)?,
            };
            Ok(LoopFigures { ready, timers, earliest_timer, cancelled_timers_seen, fds: None, selector: None, loop_time: None })
        })();
        self.buf = buf;
        result
    }

    /// Everything, including the selector's registered descriptors.
    pub fn figures<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<LoopFigures> {
        let o = self.resolve(r, event_loop)?;
        let mut figures = self.quick(r, &o)?;
        if let Some(sel) = o.selector {
            figures.selector = Some(r.type_name(sel)?);
            figures.fds = match r.getattr(sel, "_fd_to_key")? {
                Some(map) => Some(r.dict_len(map)?),
                None => None,
            };
        }
        Ok(figures)
    }

    /// `(len(heap), earliest live when, cancelled seen)`, the heap's length and first item
    /// being known. The heap's head is the minimum of all timers; only when it is cancelled
    /// do we scan the rest.
    fn timers_from<M: Memory>(&mut self, r: &ObjectReader<M>, heap: u64, len: u64, head: u64) -> Result<(u64, Option<f64>, u64)> {
        if !crate::reader::plausible_pointer(head) {
            return Err(Error::invalid(heap, "timer heap item is not a pointer"));
        }
        let (when, cancelled) = self.timer(r, head)?;
        if !cancelled {
            return Ok((len, Some(when), 0));
        }
        let (items, _) = r.list_items(heap, MAX_TIMER_SCAN)?;
        let mut earliest: Option<f64> = None;
        let mut cancelled_seen = 0;
        for t in items {
            let (when, cancelled) = self.timer(r, t)?;
            if cancelled {
                cancelled_seen += 1;
            } else if earliest.is_none_or(|e| when < e) {
                earliest = Some(when);
            }
        }
        Ok((len, earliest, cancelled_seen))
    }

    fn timer<M: Memory>(&mut self, r: &ObjectReader<M>, timer: u64) -> Result<(f64, bool)> {
        // Usually the type is the last timer's: then its type and both slots in one read.
        let ob_type = r.layout().object.ob_type;
        let guessed = self.last_timer_type.and_then(|tp| Some((tp, *self.timer_slots.get(&tp)?)));
        let (tp, slots, block, lo) = match guessed {
            Some((tp, slots)) => {
                let lo = ob_type.min(slots.when).min(slots.cancelled);
                let hi = ob_type.max(slots.when).max(slots.cancelled);
                let block = r.bytes(timer + lo, (hi - lo) as usize + 8)?;
                let actual = u64::from_le_bytes(block[(ob_type - lo) as usize..(ob_type - lo) as usize + 8].try_into().unwrap());
                if actual == tp {
                    (tp, slots, block, lo)
                } else {
                    self.timer_plain(r, timer)?
                }
            }
            None => self.timer_plain(r, timer)?,
        };
        self.last_timer_type = Some(tp);
        let at = |off: u64| u64::from_le_bytes(block[(off - lo) as usize..(off - lo) as usize + 8].try_into().unwrap());
        let (when_obj, cancelled_obj) = (at(slots.when), at(slots.cancelled));
        if !crate::reader::plausible_pointer(when_obj) || !crate::reader::plausible_pointer(cancelled_obj) {
            return Err(Error::invalid(timer, "timer slots are not pointers"));
        }
        let when = r.float(when_obj)?;
        // `_cancelled` is True or False: singletons, so the answer per address is cached.
        let cancelled = match self.bools.get(&cancelled_obj) {
            Some(b) => *b,
            None => {
                let b = r.int(cancelled_obj)? != 0;
                if r.type_name(cancelled_obj)? == "bool" {
                    self.bools.insert(cancelled_obj, b);
                }
                b
            }
        };
        Ok((when, cancelled))
    }

    /// The timer's type and slot offsets, then both slot pointers in one read: `(type, slots,
    /// bytes from `lo`, lo)`.
    fn timer_plain<M: Memory>(&mut self, r: &ObjectReader<M>, timer: u64) -> Result<(u64, TimerSlots, Vec<u8>, u64)> {
        let tp = r.type_of(timer)?;
        let slots = match self.timer_slots.get(&tp) {
            Some(s) => *s,
            None => {
                let missing = || Error::invalid(timer, "timer has no _when/_cancelled slot");
                let s = TimerSlots {
                    when: r.slot_offset(tp, "_when")?.ok_or_else(missing)?,
                    cancelled: r.slot_offset(tp, "_cancelled")?.ok_or_else(missing)?,
                };
                self.timer_slots.insert(tp, s);
                s
            }
        };
        let (lo, hi) = (slots.when.min(slots.cancelled), slots.when.max(slots.cancelled));
        let block = r.bytes(timer + lo, (hi - lo) as usize + 8)?;
        Ok((tp, slots, block, lo))
    }
}
