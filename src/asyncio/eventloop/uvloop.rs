//! uvloop's `Loop` (a Cython class): the `_ready` deque is a C field of the object, timers
//! and file descriptors live in libuv's `uv_loop_t`.

use std::collections::HashMap;

use super::LoopFigures;
use crate::process::memory::Memory;
use crate::python::layout::LIBUV;
use crate::python::reader::{le, words_of, Error, ObjectReader, Result};

/// The objects of one uvloop loop that the figures come from: C fields of the `Loop` object,
/// read again at every sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UvObjects {
    /// Where the `Loop` keeps its `_ready` deque, and the deque seen last.
    pub ready_at: u64,
    pub ready: u64,
    /// The `uv_loop_t` seen last (`Loop.uvloop`).
    pub uv: u64,
    /// Its `internal_fields` (allocated with the loop, fixed for its life).
    pub internal: u64,
}

/// Reads uvloop loops; caches where each `Loop` class keeps its `_ready` deque.
#[derive(Debug, Default)]
pub struct UvLoop {
    ready_at: HashMap<u64, u64>,
}

impl UvLoop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Find the loop's `_ready` deque and its `uv_loop_t`.
    pub fn resolve<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<UvObjects> {
        let ready_at = event_loop + self.ready_offset(r, event_loop)?;
        let ready = r.obj_ptr(ready_at)?;
        let uv = r.obj_ptr(event_loop + LIBUV.loop_uv)?;
        if r.u64(uv + LIBUV.uv_data)? != event_loop {
            return Err(Error::invalid(uv, "uv_loop_t.data does not point back at the uvloop Loop"));
        }
        let internal = r.obj_ptr(uv + LIBUV.uv_internal)?;
        Ok(UvObjects { ready_at, ready, uv, internal })
    }

    /// File descriptors libuv watches (for a one-off look).
    pub fn fds<M: Memory>(&self, r: &ObjectReader<M>, o: &UvObjects) -> Result<u64> {
        Ok(r.u32(o.uv + LIBUV.uv_nfds)? as u64)
    }

    /// Ready depth, timers and the loop's clock. One system call reads the caller's `also`
    /// words, the `Loop`'s two pointers, and where they pointed last: the deque's header and
    /// the `uv_loop_t` timer fields; then the earliest timer.
    pub fn quick<M: Memory>(
        &mut self,
        r: &ObjectReader<M>,
        event_loop: u64,
        o: &mut UvObjects,
        also: &[u64],
        also_words: &mut Vec<u64>,
    ) -> Result<LoopFigures> {
        let hs = r.list_head_span();
        let uv_len = (LIBUV.uv_time - LIBUV.uv_timer_min + 8) as usize;
        let mut ranges: Vec<(u64, usize)> = also.iter().map(|a| (*a, 8)).collect();
        ranges.push((o.ready_at, 8));
        ranges.push((event_loop + LIBUV.loop_uv, 8));
        let base = 8 * ranges.len();
        ranges.push((o.ready, hs));
        ranges.push((o.uv + LIBUV.uv_timer_min, uv_len));
        ranges.push((o.internal + LIBUV.internal_loop_count, 8));
        let mut buf = vec![0u8; base + hs + uv_len + 8];
        let got = r.memory().read_many(&ranges, &mut buf)?;
        if got < base {
            return Err(Error::invalid(event_loop, "uvloop Loop unreadable"));
        }
        let w = words_of(&buf[..base]);
        also_words.clear();
        also_words.extend_from_slice(&w[..also.len()]);
        let (ready_now, uv_now) = (w[also.len()], w[also.len() + 1]);
        if ready_now != o.ready || uv_now != o.uv || got < buf.len() {
            // Moved (or the old places no longer read): the new ones, read alone.
            *o = self.resolve(r, event_loop)?;
            r.memory().read(o.ready, &mut buf[base..base + hs])?;
            r.memory().read(o.uv + LIBUV.uv_timer_min, &mut buf[base + hs..base + hs + uv_len])?;
            r.memory().read(o.internal + LIBUV.internal_loop_count, &mut buf[base + hs + uv_len..])?;
        }
        let ready = r.deque_len_in(o.ready, &buf[base..base + hs])?;
        let iteration = le::u64(&buf, (base + hs + uv_len) as u64)?;
        let head = &buf[base + hs..base + hs + uv_len];
        let word = |off: u64| le::u64(head, off - LIBUV.uv_timer_min);
        let min = word(LIBUV.uv_timer_min)?;
        let timers = word(LIBUV.uv_timer_count)? & 0xffff_ffff;
        let now_ms = word(LIBUV.uv_time)?;
        if (min == 0) != (timers == 0) || timers > 1 << 24 {
            return Err(Error::invalid(o.uv, format!("timer heap of {timers} with head {min:#x}")));
        }
        // The earliest timer; if the heap changes under the read (the head freed), the lag of
        // this look is unknown and the rest of the look stands.
        let earliest = |r: &ObjectReader<M>| -> Result<Option<f64>> {
            match min {
                0 => Ok(None),
                node => {
                    let timer = node.checked_sub(LIBUV.timer_node).filter(|t| crate::python::reader::plausible_pointer(*t));
                    let timer = timer.ok_or_else(|| Error::invalid(o.uv, "bad timer heap node"))?;
                    let timeout = r.u64(timer + LIBUV.timer_timeout)?;
                    // Counts only if that timer still heads the heap (else it may be freed).
                    if r.u64(o.uv + LIBUV.uv_timer_min)? != node {
                        return Err(Error::invalid(o.uv, "the timer heap changed while it was read"));
                    }
                    Ok(Some(timeout as f64 / 1e3))
                }
            }
        };
        let (earliest_timer, timers_known) = match earliest(r) {
            Ok(t) => (t, true),
            Err(_) => (None, false),
        };
        Ok(LoopFigures {
            ready,
            timers,
            earliest_timer,
            ready_timer: None,
            cancelled_timers_seen: 0,
            fds: None,
            selector: None,
            loop_time: Some(now_ms as f64 / 1e3),
            iteration: Some(iteration),
            timers_known,
        })
    }

    /// The `_ready` deque: the one `collections.deque` among the object's first pointer
    /// fields (at +96 in uvloop 0.19–0.23), found once per class.
    fn ready_offset<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<u64> {
        let tp = r.type_of(event_loop)?;
        if let Some(off) = self.ready_at.get(&tp) {
            return Ok(*off);
        }
        let (from, to) = LIBUV.ready_scan;
        let words = r.pointer_array(event_loop + from, ((to - from) / 8) as usize)?;
        let mut found = None;
        for (i, p) in words.iter().enumerate() {
            if crate::python::reader::plausible_pointer(*p) && r.type_name(*p).is_ok_and(|n| n == "collections.deque") {
                if found.is_some() {
                    return Err(Error::invalid(event_loop, "more than one deque in uvloop.Loop"));
                }
                found = Some(from + 8 * i as u64);
            }
        }
        let off = found.ok_or_else(|| Error::invalid(event_loop, "no _ready deque in uvloop.Loop"))?;
        self.ready_at.insert(tp, off);
        Ok(off)
    }
}
