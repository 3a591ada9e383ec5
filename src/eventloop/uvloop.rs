//! uvloop's `Loop` (a Cython class): the `_ready` deque is a C field of the object, timers
//! and file descriptors live in libuv's `uv_loop_t`.

use std::collections::HashMap;

use super::LoopFigures;
use crate::layout::LIBUV;
use crate::memory::Memory;
use crate::reader::{Error, ObjectReader, Result};

/// The objects of one uvloop loop that the figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UvObjects {
    pub ready: u64,
    pub uv: u64,
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

    /// Find the loop's `_ready` deque and its `uv_loop_t` (once, not per sample).
    pub fn resolve<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<UvObjects> {
        let ready = self.ready_deque(r, event_loop)?;
        let uv = r.obj_ptr(event_loop + LIBUV.loop_uv)?;
        if r.u64(uv + LIBUV.uv_data)? != event_loop {
            return Err(Error::invalid(uv, "uv_loop_t.data does not point back at the uvloop Loop"));
        }
        Ok(UvObjects { ready, uv })
    }

    /// Everything a look needs.
    pub fn figures<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<LoopFigures> {
        let o = self.resolve(r, event_loop)?;
        let mut figures = self.quick(r, &o)?;
        figures.fds = Some(r.u32(o.uv + LIBUV.uv_nfds)? as u64);
        Ok(figures)
    }

    /// Ready depth, timers and the loop's clock: two reads (the deque's header and the
    /// `uv_loop_t` fields in one call, then the earliest timer).
    pub fn quick<M: Memory>(&mut self, r: &ObjectReader<M>, o: &UvObjects) -> Result<LoopFigures> {
        let uv = o.uv;
        let hs = r.list_head_span();
        let uv_len = (LIBUV.uv_time - LIBUV.uv_timer_min + 8) as usize;
        let mut buf = vec![0u8; hs + uv_len];
        if r.memory().read_many(&[(o.ready, hs), (uv + LIBUV.uv_timer_min, uv_len)], &mut buf)? < hs + uv_len {
            // Read each alone, failing as they would.
            r.memory().read(o.ready, &mut buf[..hs])?;
            r.memory().read(uv + LIBUV.uv_timer_min, &mut buf[hs..])?;
        }
        let ready = r.deque_len_in(o.ready, &buf[..hs])?;
        let head = &buf[hs..];
        let word = |off: u64| u64::from_le_bytes(head[(off - LIBUV.uv_timer_min) as usize..][..8].try_into().unwrap());
        let min = word(LIBUV.uv_timer_min);
        let timers = word(LIBUV.uv_timer_count) & 0xffff_ffff;
        let now_ms = word(LIBUV.uv_time);
        let earliest_timer = match min {
            0 => None,
            node => {
                let timer = node.checked_sub(LIBUV.timer_node).filter(|t| crate::reader::plausible_pointer(*t));
                let timer = timer.ok_or_else(|| Error::invalid(uv, "bad timer heap node"))?;
                Some(r.u64(timer + LIBUV.timer_timeout)? as f64 / 1e3)
            }
        };
        if (min == 0) != (timers == 0) || timers > 1 << 24 {
            return Err(Error::invalid(uv, format!("timer heap of {timers} with head {min:#x}")));
        }
        Ok(LoopFigures {
            ready,
            timers,
            earliest_timer,
            cancelled_timers_seen: 0,
            fds: None,
            selector: None,
            loop_time: Some(now_ms as f64 / 1e3),
        })
    }

    /// The `_ready` deque: the one `collections.deque` among the object's first pointer
    /// fields (at +96 in uvloop 0.19–0.23), found once per class.
    fn ready_deque<M: Memory>(&mut self, r: &ObjectReader<M>, event_loop: u64) -> Result<u64> {
        let tp = r.type_of(event_loop)?;
        if let Some(off) = self.ready_at.get(&tp) {
            return r.obj_ptr(event_loop + off);
        }
        let (from, to) = LIBUV.ready_scan;
        let words = r.pointer_array(event_loop + from, ((to - from) / 8) as usize)?;
        let mut found = None;
        for (i, p) in words.iter().enumerate() {
            if crate::reader::plausible_pointer(*p) && r.type_name(*p).is_ok_and(|n| n == "collections.deque") {
                if found.is_some() {
                    return Err(Error::invalid(event_loop, "more than one deque in uvloop.Loop"));
                }
                found = Some(from + 8 * i as u64);
            }
        }
        let off = found.ok_or_else(|| Error::invalid(event_loop, "no _ready deque in uvloop.Loop"))?;
        self.ready_at.insert(tp, off);
        r.obj_ptr(event_loop + off)
    }
}
