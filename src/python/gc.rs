//! The cyclic garbage collector's state, read from outside: is a collection running now, and
//! of which generation.
//!
//! `struct _gc_runtime_state` lives in `_PyRuntime` (3.8) or in the interpreter (3.9+); where,
//! and where its fields are, is a table row ([`GcLayout`]; 3.13+ publishes `collecting` and
//! the state's place in the interpreter). Its `collecting` int is 1 from before the "start"
//! callbacks of `gc.callbacks` to after the "stop" ones, for automatic collections and
//! `gc.collect()` alike. The generation is not kept anywhere while it is collected (it is a C
//! local), but a collection of generation N zeroes the counts of generations 0..=N and adds
//! one to N+1's before it starts: so while collecting, a count of generation 1 above zero
//! means generation 0 is collected, else a count of generation 2 above zero means
//! generation 1, else generation 2. (During the "start" callbacks the counts are not reset
//! yet: a look that lands there may name a younger generation.)
//!
//! Every address is read as an 8-byte word in the loop's own figures read (no extra system
//! call), and every value is checked: `collecting` must be 0 or 1 and a count not negative,
//! else the look's GC state is unknown.

use serde::Serialize;

use crate::process::mapped;
use crate::process::memory::Memory;
use crate::python::layout::{GcHome, GcLayout};
use crate::python::reader::{self, plausible_pointer, ObjectReader};

/// The frame put on top of a stack sampled while the interpreter collected garbage (as
/// py-spy's `--gil` adds one): flame graphs show the collection above the code it
/// interrupted. It has no file; blame looks past it.
pub const GC_FRAME: &str = "<garbage collection>";

/// Is this the frame [`GC_FRAME`] names?
pub fn is_gc_frame(f: &crate::python::frames::StackFrame) -> bool {
    &*f.function == GC_FRAME && f.file.is_empty() && f.line == 0
}

/// `frames` (innermost first) with [`GC_FRAME`] on top.
pub fn with_gc_frame(frames: &[crate::python::frames::StackFrame]) -> Vec<crate::python::frames::StackFrame> {
    let mut out = Vec::with_capacity(frames.len() + 1);
    out.push(crate::python::frames::StackFrame { function: GC_FRAME.into(), file: "".into(), line: 0 });
    out.extend_from_slice(frames);
    out
}

/// The interpreter's GC at one look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcAt {
    /// Not read (no GC state found, a value that made no sense, an old capture).
    #[default]
    Unknown,
    /// No collection running.
    Idle,
    /// A collection running, of this generation (0–2) when the counts tell it.
    Collecting(Option<u8>),
}

impl GcAt {
    pub fn collecting(self) -> bool {
        matches!(self, GcAt::Collecting(_))
    }

    /// One byte, as capture files keep it: 0 unknown, 1 idle, 2 collecting (generation
    /// unknown), 3 + N collecting generation N.
    pub fn code(self) -> u8 {
        match self {
            GcAt::Unknown => 0,
            GcAt::Idle => 1,
            GcAt::Collecting(None) => 2,
            GcAt::Collecting(Some(g)) => 3 + g.min(2),
        }
    }

    /// The inverse of [`GcAt::code`]; anything else is unknown.
    pub fn from_code(c: u8) -> GcAt {
        match c {
            1 => GcAt::Idle,
            2 => GcAt::Collecting(None),
            3..=5 => GcAt::Collecting(Some(c - 3)),
            _ => GcAt::Unknown,
        }
    }
}

/// The addresses of one interpreter's GC state: `collecting`, then the counts of
/// generations 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcWatch {
    addrs: [u64; 3],
}

/// How many words [`GcWatch::addrs`] gives.
pub const WORDS: usize = 3;

impl GcWatch {
    /// Where the GC state of the interpreter at `interp` is, checked by one read; `None`
    /// when it cannot be found or reads as nonsense.
    pub fn resolve<M: Memory>(pid: i32, r: &ObjectReader<M>, interp: u64) -> Option<GcWatch> {
        if !plausible_pointer(interp) {
            return None;
        }
        let g = r.layout().gc;
        let state = match g.home {
            GcHome::Interp { offset } => interp.checked_add(offset)?,
            GcHome::Runtime { offset } => runtime_of(pid, r, interp)?.checked_add(offset)?,
        };
        let watch = GcWatch::at(state, &g)?;
        let words: Vec<u64> =
            watch.addrs.iter().map(|a| r.bytes(*a, 8).ok().and_then(|b| reader::le::u64(&b, 0).ok())).collect::<Option<_>>()?;
        (decode(&words) != GcAt::Unknown).then_some(watch)
    }

    fn at(state: u64, g: &GcLayout) -> Option<GcWatch> {
        let count = |n: u64| state.checked_add(g.generations)?.checked_add(n.checked_mul(g.generation_size)?)?.checked_add(g.count);
        Some(GcWatch { addrs: [state.checked_add(g.collecting)?, count(1)?, count(2)?] })
    }

    /// The words to read (8 bytes each), in the order [`GcWatch::decode`] takes them.
    pub fn addrs(&self) -> impl Iterator<Item = u64> + '_ {
        self.addrs.iter().copied()
    }

    /// The state from the words read at [`GcWatch::addrs`].
    pub fn decode(&self, words: &[u64]) -> GcAt {
        decode(words)
    }

    /// The state now (a one-off look: `dump`).
    pub fn now<M: Memory>(&self, r: &ObjectReader<M>) -> GcAt {
        let words: Option<Vec<u64>> = self.addrs.iter().map(|a| r.bytes(*a, 8).ok().and_then(|b| reader::le::u64(&b, 0).ok())).collect();
        words.map_or(GcAt::Unknown, |w| decode(&w))
    }
}

/// `collecting` and the counts of generations 1 and 2 (ints: the low half of each word).
fn decode(words: &[u64]) -> GcAt {
    let [collecting, c1, c2] = match words {
        [a, b, c, ..] => [*a as u32 as i32, *b as u32 as i32, *c as u32 as i32],
        _ => return GcAt::Unknown,
    };
    match collecting {
        0 => GcAt::Idle,
        1 if c1 < 0 || c2 < 0 => GcAt::Collecting(None),
        1 if c1 > 0 => GcAt::Collecting(Some(0)),
        1 if c2 > 0 => GcAt::Collecting(Some(1)),
        1 => GcAt::Collecting(Some(2)),
        _ => GcAt::Unknown,
    }
}

/// 3.8: `_PyRuntime` (an exported symbol of the interpreter or libpython), confirmed by its
/// `interpreters.head` being the interpreter we read.
fn runtime_of<M: Memory>(pid: i32, r: &ObjectReader<M>, interp: u64) -> Option<u64> {
    let maps = mapped::read(pid).ok()?;
    let head = r.layout().interp.runtime_head;
    maps.iter()
        .filter(|m| m.offset == 0 && m.file_name().is_some_and(|n| n.starts_with("python3") || n.starts_with("libpython3")))
        .filter_map(|m| crate::process::elf::exported_in_memory(r.memory(), m.start, "_PyRuntime"))
        .find(|rt| rt.checked_add(head).and_then(|a| r.ptr(a).ok()) == Some(interp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collecting_and_the_counts_name_the_generation() {
        assert_eq!(decode(&[0, 5, 3]), GcAt::Idle);
        assert_eq!(decode(&[1, 1, 3]), GcAt::Collecting(Some(0)));
        assert_eq!(decode(&[1, 0, 3]), GcAt::Collecting(Some(1)));
        assert_eq!(decode(&[1, 0, 0]), GcAt::Collecting(Some(2)));
        // The high half of a word is the next field: ignored.
        assert_eq!(decode(&[1 | (7 << 32), 0xdead_0000_0000, 0]), GcAt::Collecting(Some(2)));
        assert_eq!(decode(&[2, 0, 0]), GcAt::Unknown, "collecting is 0 or 1");
        assert_eq!(decode(&[1, u32::MAX as u64, 0]), GcAt::Collecting(None), "a negative count names nothing");
        assert_eq!(decode(&[1, 0]), GcAt::Unknown);
        for c in 0..=255u8 {
            let at = GcAt::from_code(c);
            assert!(at == GcAt::Unknown || at.code() == c);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_words_decode_without_panic(a: u64, b: u64, c: u64) {
            let at = decode(&[a, b, c]);
            proptest::prop_assert_eq!(GcAt::from_code(at.code()), at);
            if let GcAt::Collecting(Some(g)) = at {
                proptest::prop_assert!(g <= 2);
            }
        }
    }
}
