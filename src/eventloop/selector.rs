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

/// Reads a stock asyncio loop; caches per-class slot offsets between reads.
#[derive(Debug, Default)]
pub struct SelectorLoop {
    timer_slots: HashMap<u64, TimerSlots>,
}

impl SelectorLoop {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn figures<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<LoopFigures> {
        let ready = r.deque_len(r.attr(event_loop, "_ready")?)?;
        let scheduled = r.attr(event_loop, "_scheduled")?;
        let (timers, earliest_timer, cancelled_timers_seen) = self.timers(r, scheduled)?;
        let (fds, selector) = match r.getattr(event_loop, "_selector")? {
            Some(sel) if !r.is_none(sel)? => {
                let name = r.type_name(sel)?;
                let fds = match r.getattr(sel, "_fd_to_key")? {
                    Some(map) => Some(r.dict_len(map)?),
                    None => None,
                };
                (fds, Some(name))
            }
            _ => (None, None),
        };
        Ok(LoopFigures { ready, timers, earliest_timer, cancelled_timers_seen, fds, selector, loop_time: None })
    }

    /// `(len(heap), earliest live when, cancelled seen)`. The heap's head is the minimum of
    /// all timers; only when it is cancelled do we scan the rest.
    fn timers<M: Memory>(&mut self, r: &ObjectReader<M>, heap: u64) -> Result<(u64, Option<f64>, u64)> {
        let len = r.list_len(heap)?;
        if len == 0 {
            return Ok((0, None, 0));
        }
        let (head, _) = r.list_items(heap, 1)?;
        let (when, cancelled) = self.timer(r, head[0])?;
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
        let when = r.float(r.obj_ptr(timer + slots.when)?)?;
        let cancelled = r.int(r.obj_ptr(timer + slots.cancelled)?)? != 0;
        Ok((when, cancelled))
    }
}
