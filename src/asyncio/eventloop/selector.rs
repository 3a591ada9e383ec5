//! asyncio's own loops (`BaseEventLoop` subclasses): the `_ready` deque, the `_scheduled` heap
//! of `TimerHandle`s, `_selector._fd_to_key`.
//!
//! The loop rebinds its attributes (`_run_once` replaces `_scheduled` with a new list when it
//! compacts the heap), so every sample reads the attributes' slots again through their
//! [`Watch`]es, in the same system call as the objects they pointed at last time; those
//! objects' bytes are used only when the slots still point at them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::LoopFigures;
use crate::process::memory::Memory;
use crate::python::reader::{le, plausible_pointer, words_of, Error, ObjectReader, Result, Watch};

/// Most heap entries visited looking for the earliest live timer past cancelled ones.
pub const MAX_TIMER_SCAN: usize = 4096;
/// Most ready-queue entries looked at for timers waiting to run.
pub const MAX_READY_SCAN: usize = 1024;

/// Slot offsets of a `TimerHandle` class.
#[derive(Debug, Clone, Copy)]
struct TimerSlots {
    when: u64,
    cancelled: u64,
}

/// The attributes of one stock loop that the figures come from, watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorObjects {
    pub ready: Watch,
    pub scheduled: Watch,
    /// `loop._selector` when resolved (for its class and registered descriptors).
    pub selector: Option<u64>,
    /// What the watches pointed at when last read.
    ready_obj: u64,
    scheduled_obj: u64,
}

/// A deque's length and where its items are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DequeShape {
    len: u64,
    leftblock: u64,
    rightblock: u64,
    leftindex: i64,
    rightindex: i64,
}

/// Reads stock asyncio loops; caches per-class slot offsets and the bool singletons.
#[derive(Debug, Default)]
pub struct SelectorLoop {
    timer_slots: HashMap<u64, TimerSlots>,
    /// Types known to be (or not to be) timers, for the ready-queue scan.
    timer_types: HashMap<u64, bool>,
    bools: HashMap<u64, bool>,
    float_type: Option<u64>,
    /// Per timer heap (list), where its item array was at the last sample: where to look
    /// first for the earliest timer (checked against the list's own pointer every time).
    heap_items: HashMap<u64, u64>,
    buf: Vec<u8>,
}

impl SelectorLoop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Find the loop's attributes (instance attribute lookups: done again only when they move).
    pub fn resolve<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<SelectorObjects> {
        let missing = |name: &str| Error::invalid(event_loop, format!("loop has no attribute {name}"));
        let ready = r.watch_attr(event_loop, "_ready")?.ok_or_else(|| missing("_ready"))?;
        let scheduled = r.watch_attr(event_loop, "_scheduled")?.ok_or_else(|| missing("_scheduled"))?;
        let selector = r.getattr(event_loop, "_selector")?.filter(|s| !r.is_none(*s).unwrap_or(true));
        let ready_obj = r.obj_ptr(ready.slot)?;
        let scheduled_obj = r.obj_ptr(scheduled.slot)?;
        Ok(SelectorObjects { ready, scheduled, selector, ready_obj, scheduled_obj })
    }

    /// Ready depth and timers. One system call reads, in order: the caller's `also` words,
    /// both attributes' watches, the deque's and the heap list's headers where they were, and
    /// the heap's first item where it was; then the earliest timer (type, slots, value). When
    /// a watch shows its attribute moved, it is resolved again (`o` updated) and read anew.
    /// `scan_ready`: also look for due timers waiting in `_ready` (a loop blocked in a
    /// callback), whose lateness is the loop's lag too.
    pub fn quick<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        event_loop: u64,
        o: &mut SelectorObjects,
        also: &[u64],
        also_words: &mut Vec<u64>,
        scan_ready: bool,
    ) -> Result<LoopFigures> {
        let (rs, ss) = (deque_span(r), r.list_head_span());
        let guess = self.heap_items.get(&o.scheduled_obj).copied();
        let mut ranges: Vec<(u64, usize)> = also.iter().map(|a| (*a, 8)).collect();
        ranges.extend(o.ready.addrs().map(|a| (a, 8)));
        ranges.extend(o.scheduled.addrs().map(|a| (a, 8)));
        let words = ranges.len();
        ranges.push((o.ready_obj, rs));
        ranges.push((o.scheduled_obj, ss));
        if let Some(g) = guess {
            ranges.push((g, 8));
        }
        let base = 8 * words;
        let total = base + rs + ss + if guess.is_some() { 8 } else { 0 };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(total, 0);
        let result = (|| {
            let got = r.memory().read_many(&ranges, &mut buf)?;
            if got < base {
                return Err(Error::invalid(event_loop, "loop attributes unreadable"));
            }
            let w = words_of(&buf[..base]);
            also_words.clear();
            also_words.extend_from_slice(&w[..also.len()]);
            let (rw, sw) = w[also.len()..].split_at(o.ready.len());
            let (mut ready_now, mut sched_now) = (o.ready.value(rw), o.scheduled.value(sw));
            if ready_now.is_none() || sched_now.is_none() {
                // An attribute moved (rebound, or the instance dict changed): find it again.
                let selector = o.selector;
                *o = self.resolve(r, event_loop)?;
                o.selector = selector;
                ready_now = Some(o.ready_obj);
                sched_now = Some(o.scheduled_obj);
            }
            let (ready_obj, sched_obj) = (ready_now.unwrap_or(0), sched_now.unwrap_or(0));
            if !plausible_pointer(ready_obj) || !plausible_pointer(sched_obj) {
                return Err(Error::invalid(event_loop, "loop attribute is not an object"));
            }
            let ready_head: Vec<u8> =
                if ready_obj == o.ready_obj && got >= base + rs { buf[base..base + rs].to_vec() } else { r.bytes(ready_obj, rs)? };
            let sched_fresh = sched_obj == o.scheduled_obj && got >= base + rs + ss;
            let sched_head: Vec<u8> = if sched_fresh { buf[base + rs..base + rs + ss].to_vec() } else { r.bytes(sched_obj, ss)? };
            o.ready_obj = ready_obj;
            o.scheduled_obj = sched_obj;

            let ready = r.deque_len_in(ready_obj, &ready_head)?;
            let (len, items) = r.list_head_in(sched_obj, &sched_head)?;
            let head = match len {
                0 => None,
                _ if sched_fresh && guess == Some(items) && got == total => Some(le::u64(&buf, (total - 8) as u64)?),
                _ => Some(r.u64(items)?),
            };
            if len > 0 {
                if self.heap_items.len() > 64 {
                    self.heap_items.clear();
                }
                self.heap_items.insert(sched_obj, items);
            }
            // The timers: a heap or ready queue that changes while it is read (hundreds of
            // timeouts firing at once) is read again, from fresh headers; if it keeps
            // changing, the lag of this look is unknown and the rest of the look stands.
            let mut timers = self.timer_figures(r, (sched_obj, len, items, head), (ready_obj, ready, &ready_head), scan_ready);
            if timers.is_err() {
                let fresh = (|| -> Result<_> {
                    let sched_head = r.bytes(sched_obj, ss)?;
                    let (len, items) = r.list_head_in(sched_obj, &sched_head)?;
                    let head = if len == 0 { None } else { Some(r.u64(items)?) };
                    let ready_head = r.bytes(ready_obj, rs)?;
                    let ready = r.deque_len_in(ready_obj, &ready_head)?;
                    self.timer_figures(r, (sched_obj, len, items, head), (ready_obj, ready, &ready_head), scan_ready)
                })();
                timers = fresh;
            }
            // (An error leaves every figure empty and `timers_known` false.)
            let (earliest_timer, ready_timer, cancelled_timers_seen, timers_known) = timers.unwrap_or_default();
            Ok(LoopFigures {
                ready,
                timers: len,
                earliest_timer,
                ready_timer,
                cancelled_timers_seen,
                fds: None,
                selector: None,
                loop_time: None,
                iteration: None,
                timers_known,
            })
        })();
        self.buf = buf;
        result
    }

    /// `(earliest live timer, earliest due timer waiting in the ready queue, cancelled timers
    /// seen, complete)` from the heap `(list, len, items, first item)` and the ready deque
    /// `(deque, len, its header bytes)`.
    #[allow(clippy::type_complexity)]
    fn timer_figures<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        (heap, len, items, head): (u64, u64, u64, Option<u64>),
        (ready_obj, ready, ready_head): (u64, u64, &[u8]),
        scan_ready: bool,
    ) -> Result<(Option<f64>, Option<f64>, u64, bool)> {
        let (earliest, cancelled, complete) = match head {
            None => (None, 0, true),
            Some(head) => self.earliest_live(r, heap, len, items, head)?,
        };
        let ready_timer = if scan_ready && ready > 0 { self.earliest_in_ready(r, ready_obj, ready_head)? } else { None };
        Ok((earliest, ready_timer, cancelled, complete))
    }

    /// The selector's class and how many descriptors it watches (for a one-off look).
    pub fn selector_facts<M: Memory>(&self, r: &ObjectReader<M>, o: &SelectorObjects) -> Result<(Option<String>, Option<u64>)> {
        let Some(sel) = o.selector else { return Ok((None, None)) };
        let fds = match r.getattr(sel, "_fd_to_key")? {
            Some(map) => Some(r.dict_len(map)?),
            None => None,
        };
        Ok((Some(r.type_name(sel)?), fds))
    }

    /// `(earliest live when, cancelled timers seen)` of a heap whose length, item array and
    /// first item are known. The head is the minimum of all timers; when it is cancelled
    /// (asyncio drops cancelled heads lazily) the heap is searched best first: a cancelled
    /// node's children may hold the answer, a live node's subtree cannot hold an earlier one,
    /// so the first live node taken from the frontier is the earliest.
    /// The third value is false when the search stopped at [`MAX_TIMER_SCAN`] cancelled
    /// timers without finding a live one (the earliest live timer is then not known).
    fn earliest_live<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        heap: u64,
        len: u64,
        items: u64,
        head: u64,
    ) -> Result<(Option<f64>, u64, bool)> {
        if !plausible_pointer(head) {
            return Err(Error::invalid(heap, "timer heap item is not a pointer"));
        }
        let (when, cancelled) = self.timers(r, &[head])?[0];
        // The head may have left the heap (and been freed, its memory reused) while we read
        // it: its figures count only if the heap still starts with it.
        let unchanged = |r: &ObjectReader<M>| -> Result<()> {
            let ss = r.list_head_span();
            let mut again = vec![0u8; ss + 8];
            if r.memory().read_many(&[(heap, ss), (items, 8)], &mut again)? < again.len()
                || r.list_head_in(heap, &again[..ss])? != (len, items)
                || le::u64(&again, ss as u64)? != head
            {
                return Err(Error::invalid(heap, "the timer heap changed while it was read"));
            }
            Ok(())
        };
        unchanged(r)?;
        if !cancelled {
            return Ok((Some(when), 0, true));
        }
        // A search below a cancelled head reads timers deeper in the heap: they count only if
        // the heap did not change meanwhile (a timer popped may be freed and reused).
        let found = self.search_below_cancelled(r, heap, len, items, when)?;
        unchanged(r)?;
        Ok(found)
    }

    fn search_below_cancelled<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        heap: u64,
        len: u64,
        items: u64,
        when: f64,
    ) -> Result<(Option<f64>, u64, bool)> {
        let cancelled = true;
        // Ordered by `when` first (reversed: the std heap pops the largest).
        let mut frontier: BinaryHeap<(Reverse<OrdF64>, bool, u64)> = BinaryHeap::new();
        frontier.push((Reverse(OrdF64(when)), cancelled, 0));
        let mut cancelled_seen = 0u64;
        while let Some((Reverse(OrdF64(when)), cancelled, i)) = frontier.pop() {
            if !cancelled {
                return Ok((Some(when), cancelled_seen, true));
            }
            cancelled_seen += 1;
            if cancelled_seen as usize >= MAX_TIMER_SCAN {
                // Too many cancelled timers to search: no figure rather than a wrong one.
                return Ok((None, cancelled_seen, false));
            }
            let first = 2 * i + 1;
            if first >= len {
                continue;
            }
            let n = (len - first).min(2) as usize;
            let ptrs = r.pointer_array(items + 8 * first, n)?;
            if ptrs.iter().any(|p| !plausible_pointer(*p)) {
                return Err(Error::invalid(heap, "timer heap item is not a pointer"));
            }
            for (k, (when, cancelled)) in self.timers(r, &ptrs)?.into_iter().enumerate() {
                frontier.push((Reverse(OrdF64(when)), cancelled, first + k as u64));
            }
        }
        Ok((None, cancelled_seen, true))
    }

    /// The earliest `when` of the live timers waiting in the ready deque (due timers move
    /// there before they run; while a callback blocks, they wait there). Scans at most
    /// [`MAX_READY_SCAN`] entries from the left, where the next ones to run are; the result is
    /// reused while the deque has not changed.
    fn earliest_in_ready<M: Memory>(&mut self, r: &ObjectReader<M>, deque: u64, head: &[u8]) -> Result<Option<f64>> {
        let d = r.layout().containers.deque;
        let word = |at: u64| le::u64(head, at);
        let shape = DequeShape {
            len: word(r.layout().object.ob_size)?,
            leftblock: word(d.leftblock)?,
            rightblock: word(d.rightblock)?,
            leftindex: word(d.leftindex)? as i64,
            rightindex: word(d.rightindex)? as i64,
        };
        let block_len = d.block_len as i64;
        if !plausible_pointer(shape.leftblock)
            || !plausible_pointer(shape.rightblock)
            || !(0..block_len).contains(&shape.leftindex)
            || !(-1..block_len).contains(&shape.rightindex)
        {
            return Err(Error::invalid(deque, "deque blocks"));
        }
        // Walk the blocks from the left: `[leftlink, data[BLOCKLEN], rightlink]`.
        let mut entries: Vec<u64> = Vec::new();
        let mut block = shape.leftblock;
        let mut from = shape.leftindex;
        let block_bytes = (d.block_data + 8 * d.block_len + 8) as usize;
        while entries.len() < MAX_READY_SCAN && (entries.len() as u64) < shape.len {
            let raw = words_of(&r.bytes(block, block_bytes)?);
            let data = &raw[(d.block_data / 8) as usize..(d.block_data / 8 + d.block_len) as usize];
            let to = if block == shape.rightblock { shape.rightindex } else { block_len - 1 };
            if from <= to {
                entries.extend(&data[from as usize..=to as usize]);
            }
            if block == shape.rightblock {
                break;
            }
            block = raw[raw.len() - 1];
            if !plausible_pointer(block) {
                return Err(Error::invalid(deque, "deque block link"));
            }
            from = 0;
        }
        entries.truncate(MAX_READY_SCAN);
        if entries.iter().any(|e| !plausible_pointer(*e)) {
            return Err(Error::invalid(deque, "deque entry is not an object"));
        }
        // Which entries are timers: their types, in one call.
        let ob_type = r.layout().object.ob_type;
        let types = r.memory().read_batch(&entries.iter().map(|e| e + ob_type).collect::<Vec<_>>(), 8);
        let mut timers = Vec::new();
        for (e, tp) in entries.iter().zip(types) {
            let tp = le::u64(&tp.ok_or_else(|| Error::invalid(*e, "deque entry unreadable"))?, 0)?;
            let is_timer = match self.timer_types.get(&tp) {
                Some(t) => *t,
                None => {
                    let t = r.is_subclass_by_name(tp, "TimerHandle")?;
                    self.timer_types.insert(tp, t);
                    t
                }
            };
            if is_timer {
                timers.push(*e);
            }
        }
        let found = self.timers(r, &timers)?.into_iter().filter(|(_, c)| !c).map(|(w, _)| w).min_by(f64::total_cmp);
        // The entries count only if the deque did not move meanwhile (a timer taken off it
        // may be freed and its memory reused).
        if found.is_some() && r.bytes(deque, head.len())? != head {
            return Err(Error::invalid(deque, "the ready queue changed while it was read"));
        }
        Ok(found)
    }

    /// `(when, cancelled)` of each timer, in three system calls whatever their number: every
    /// timer's type and slots, then every `when` float, then (rarely: they are the two bool
    /// singletons) the `_cancelled` values not seen before.
    fn timers<M: Memory>(&mut self, r: &ObjectReader<M>, timers: &[u64]) -> Result<Vec<(f64, bool)>> {
        if timers.is_empty() {
            return Ok(Vec::new());
        }
        let ob_type = r.layout().object.ob_type;
        // The slots of the timers' class (the first timer's; any other class is read alone).
        let tp0 = r.type_of(timers[0])?;
        let slots = self.slots_of(r, tp0, timers[0])?;
        let lo = ob_type.min(slots.when).min(slots.cancelled);
        let hi = ob_type.max(slots.when).max(slots.cancelled) + 8;
        let blocks = r.memory().read_batch(&timers.iter().map(|t| t + lo).collect::<Vec<_>>(), (hi - lo) as usize);
        let mut pointers = Vec::with_capacity(timers.len());
        for (t, block) in timers.iter().zip(blocks) {
            let block = block.ok_or_else(|| Error::invalid(*t, "timer unreadable"))?;
            let at = |off: u64| le::u64(&block, off - lo);
            let (when_obj, cancelled_obj) = if at(ob_type)? == tp0 {
                (at(slots.when)?, at(slots.cancelled)?)
            } else {
                let tp = r.type_of(*t)?;
                let s = self.slots_of(r, tp, *t)?;
                (r.u64(t + s.when)?, r.u64(t + s.cancelled)?)
            };
            if !plausible_pointer(when_obj) || !plausible_pointer(cancelled_obj) {
                return Err(Error::invalid(*t, "timer slots are not pointers"));
            }
            pointers.push((when_obj, cancelled_obj));
        }
        // The `when` floats: type and value together.
        let fv = r.layout().containers.float_value;
        let floats = r.memory().read_batch(&pointers.iter().map(|p| p.0).collect::<Vec<_>>(), fv as usize + 8);
        let mut out = Vec::with_capacity(timers.len());
        for ((when_obj, cancelled_obj), raw) in pointers.into_iter().zip(floats) {
            let raw = raw.ok_or_else(|| Error::invalid(when_obj, "timer when unreadable"))?;
            let tp = le::u64(&raw, ob_type)?;
            let when = if Some(tp) == self.float_type {
                le::f64(&raw, fv)?
            } else {
                let when = r.float(when_obj)?;
                if r.type_name(when_obj)? == "float" {
                    self.float_type = Some(tp);
                }
                when
            };
            if !when.is_finite() {
                return Err(Error::invalid(when_obj, "timer when is not finite"));
            }
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
            out.push((when, cancelled));
        }
        Ok(out)
    }

    fn slots_of<M: Memory>(&mut self, r: &ObjectReader<M>, tp: u64, timer: u64) -> Result<TimerSlots> {
        if let Some(s) = self.timer_slots.get(&tp) {
            return Ok(*s);
        }
        let missing = || Error::invalid(timer, "timer has no _when/_cancelled slot");
        let s = TimerSlots {
            when: r.slot_offset(tp, "_when")?.ok_or_else(missing)?,
            cancelled: r.slot_offset(tp, "_cancelled")?.ok_or_else(missing)?,
        };
        self.timer_slots.insert(tp, s);
        Ok(s)
    }
}

/// An `f64` with a total order (for the search frontier).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Bytes at the start of a deque that hold its type, length and block pointers and indices.
fn deque_span<M: Memory>(r: &ObjectReader<M>) -> usize {
    let d = r.layout().containers.deque;
    d.leftblock.max(d.rightblock).max(d.leftindex).max(d.rightindex) as usize + 8
}
