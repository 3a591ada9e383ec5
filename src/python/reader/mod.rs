//! The remote object reader: decodes Python objects from another process's memory.
//!
//! It knows object layouts (through a [`Layout`] row) and nothing about event loops, the
//! CLI or rendering. Every byte it reads is untrusted: pointers are checked before they are
//! followed, every length is bounded, every loop has a cap, and a value that does not make
//! sense is an [`Error::Invalid`], never a panic or a guess.

mod dict;
mod object;
#[cfg(test)]
pub(crate) mod tests;
mod watch;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::process::memory::{Memory, ReadError};
use crate::python::layout::Layout;

pub use object::TypeInfo;
pub use watch::{words_of, Check, Watch};

/// Type-flag bits (stable across 3.8–3.15).
pub mod flags {
    pub const INLINE_VALUES: u64 = 1 << 2;
    pub const MANAGED_DICT: u64 = 1 << 4;
    pub const HEAPTYPE: u64 = 1 << 9;
    pub const LONG_SUBCLASS: u64 = 1 << 24;
    pub const LIST_SUBCLASS: u64 = 1 << 25;
    pub const TUPLE_SUBCLASS: u64 = 1 << 26;
    pub const UNICODE_SUBCLASS: u64 = 1 << 28;
    pub const DICT_SUBCLASS: u64 = 1 << 29;
    pub const TYPE_SUBCLASS: u64 = 1 << 31;
}

/// Bounds on what one decode may read. They keep a garbage length from turning into a huge
/// allocation or a long walk.
pub mod limits {
    /// Longest string decoded, in code points; longer strings are cut (and say so).
    pub const STR_CHARS: usize = 4096;
    /// Longest name (function, task, thread) shown whole; longer ones are cut visibly.
    pub const NAME_CHARS: usize = 512;
    /// Longest type name (`tp_name` is a C string).
    pub const TYPE_NAME: usize = 256;
    /// Most items read from one list, tuple, set or dict.
    pub const ITEMS: usize = 1 << 20;
    /// Largest dict keys table accepted (log2 of slot count).
    pub const DICT_LOG2_SIZE: u8 = 30;
    /// Longest MRO walked.
    pub const MRO: usize = 64;
}

/// Why a value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The memory read itself failed.
    Read(ReadError),
    /// The bytes were read but do not describe what we expected (wrong type, impossible
    /// length, bad pointer). Usually a torn read of a changing object, or a stale pointer.
    Invalid { addr: u64, what: String },
    /// A walk that did not reach where it must end: a thread's frames cut short because the
    /// target changed them while we followed them (a generator that yielded), or that do not
    /// hold the frames running the loop. Never data.
    Incomplete(&'static str),
}

impl Error {
    pub fn invalid(addr: u64, what: impl Into<String>) -> Self {
        Error::Invalid { addr, what: what.into() }
    }

    /// The read failed because the process is gone.
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Read(e) if e.kind == crate::process::memory::ReadErrorKind::Gone)
    }

    /// The read failed because we may not read this process.
    pub fn is_denied(&self) -> bool {
        matches!(self, Error::Read(e) if e.kind == crate::process::memory::ReadErrorKind::Denied)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read(e) => write!(f, "{e}"),
            Error::Invalid { addr, what } => write!(f, "unexpected data at {addr:#x}: {what}"),
            Error::Incomplete(what) => write!(f, "incomplete read: {what}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        Error::Read(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A decoded string, with a note when it was cut at [`limits::STR_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyStr {
    pub text: String,
    pub truncated: bool,
    /// The string's whole length, in code points.
    pub chars: usize,
}

/// A fast hasher for the caches keyed by addresses (the std SipHash showed in the sampler's
/// profile). FxHash's mixing: keys come from the target's memory, and a target that made
/// them collide on purpose would only slow its own profiling down.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64)
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64)
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

/// Reads Python objects through a [`Memory`] using one version's [`Layout`].
pub struct ObjectReader<M: Memory> {
    mem: M,
    layout: &'static Layout,
    types: RefCell<FastMap<u64, Arc<TypeInfo>>>,
    /// `(keys table, name) → (entry index, key object)` of past string-key lookups.
    lookups: RefCell<FastMap<(u64, String), (u64, u64)>>,
    /// `(type, base name) → is a subclass`.
    subclasses: RefCell<FastMap<(u64, String), bool>>,
    /// The process's PID as it sees itself (its own PID namespace), when known: what
    /// `getpid()` returned to the code that recorded a running loop (3.8–3.11).
    own_pid: Option<i32>,
}

impl<M: Memory> ObjectReader<M> {
    pub fn new(mem: M, layout: &'static Layout) -> Self {
        ObjectReader {
            mem,
            layout,
            types: RefCell::new(FastMap::default()),
            lookups: RefCell::new(FastMap::default()),
            subclasses: RefCell::new(FastMap::default()),
            own_pid: None,
        }
    }

    /// Say which PID the process has in its own namespace (see [`ObjectReader::own_pid`]).
    pub fn with_own_pid(mut self, pid: Option<i32>) -> Self {
        self.own_pid = pid;
        self
    }

    /// The process's PID in its own namespace, when known.
    pub fn own_pid(&self) -> Option<i32> {
        self.own_pid
    }

    pub fn layout(&self) -> &'static Layout {
        self.layout
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Forget cached type facts (after the target may have changed a lot, e.g. a long pause).
    pub fn clear_caches(&self) {
        self.types.borrow_mut().clear();
        self.lookups.borrow_mut().clear();
        self.subclasses.borrow_mut().clear();
    }

    // ---- raw reads -------------------------------------------------------------------

    pub fn bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let addr = address(addr)?;
        let mut buf = vec![0u8; len];
        self.mem.read(addr, &mut buf)?;
        Ok(buf)
    }

    fn array<const N: usize>(&self, addr: u64) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.mem.read(addr, &mut buf)?;
        Ok(buf)
    }

    pub fn u8(&self, addr: u64) -> Result<u8> {
        let addr = address(addr)?;
        Ok(self.array::<1>(addr)?[0])
    }

    pub fn u32(&self, addr: u64) -> Result<u32> {
        let addr = address(addr)?;
        Ok(u32::from_le_bytes(self.array(addr)?))
    }

    pub fn i32(&self, addr: u64) -> Result<i32> {
        let addr = address(addr)?;
        Ok(i32::from_le_bytes(self.array(addr)?))
    }

    pub fn u64(&self, addr: u64) -> Result<u64> {
        let addr = address(addr)?;
        Ok(u64::from_le_bytes(self.array(addr)?))
    }

    pub fn i64(&self, addr: u64) -> Result<i64> {
        let addr = address(addr)?;
        Ok(i64::from_le_bytes(self.array(addr)?))
    }

    pub fn f64(&self, addr: u64) -> Result<f64> {
        let addr = address(addr)?;
        Ok(f64::from_le_bytes(self.array(addr)?))
    }

    /// Read a pointer field; 0 is allowed (NULL), anything else must look like a pointer.
    pub fn ptr(&self, addr: u64) -> Result<u64> {
        let addr = address(addr)?;
        let p = self.u64(addr)?;
        if p != 0 && !plausible_pointer(p) {
            return Err(Error::invalid(addr, format!("{p:#x} is not a pointer")));
        }
        Ok(p)
    }

    /// Read a pointer field that must point at an object (not NULL).
    pub fn obj_ptr(&self, addr: u64) -> Result<u64> {
        let addr = address(addr)?;
        let p = self.ptr(addr)?;
        if p == 0 {
            return Err(Error::invalid(addr, "NULL object pointer"));
        }
        Ok(p)
    }

    /// Read a non-NULL pointer to plain data (a C string, a struct), which need not be
    /// 8-byte aligned.
    pub fn data_ptr(&self, addr: u64) -> Result<u64> {
        let addr = address(addr)?;
        let p = self.u64(addr)?;
        if !(0x1000..0x0000_8000_0000_0000).contains(&p) {
            return Err(Error::invalid(addr, format!("{p:#x} is not a data pointer")));
        }
        Ok(p)
    }

    /// Address plus a signed offset, refusing wrap-around.
    pub fn offset(addr: u64, off: i64) -> Result<u64> {
        addr.checked_add_signed(off)
            .filter(|a| *a != 0)
            .ok_or_else(|| Error::invalid(addr, format!("offset {off} leaves the address space")))
    }
}

/// Numbers out of bytes read from the target, at offsets that come from a layout: an offset
/// that does not fit the bytes read (a layout that does not describe what was read) is an
/// [`Error::Invalid`], never a panic. The one way blocks are indexed.
pub mod le {
    use super::{Error, Result};

    fn field<const N: usize>(block: &[u8], at: u64) -> Result<[u8; N]> {
        let start = usize::try_from(at).ok();
        start
            .and_then(|s| block.get(s..s.checked_add(N)?))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::invalid(0, format!("offset {at} (+{N}) outside the {} bytes read", block.len())))
    }

    pub fn u64(block: &[u8], at: u64) -> Result<u64> {
        field::<8>(block, at).map(u64::from_le_bytes)
    }

    pub fn i64(block: &[u8], at: u64) -> Result<i64> {
        field::<8>(block, at).map(i64::from_le_bytes)
    }

    pub fn u32(block: &[u8], at: u64) -> Result<u32> {
        field::<4>(block, at).map(u32::from_le_bytes)
    }

    pub fn i32(block: &[u8], at: u64) -> Result<i32> {
        field::<4>(block, at).map(i32::from_le_bytes)
    }

    pub fn f64(block: &[u8], at: u64) -> Result<f64> {
        field::<8>(block, at).map(f64::from_le_bytes)
    }

    pub fn u8(block: &[u8], at: u64) -> Result<u8> {
        field::<1>(block, at).map(|b| b[0])
    }

    /// `block[at..]`, or an error.
    pub fn tail(block: &[u8], at: u64) -> Result<&[u8]> {
        usize::try_from(at)
            .ok()
            .and_then(|s| block.get(s..))
            .ok_or_else(|| Error::invalid(0, format!("offset {at} outside the {} bytes read", block.len())))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn offsets_outside_the_block_are_errors() {
            let b = [1u8, 0, 0, 0, 0, 0, 0, 0, 2];
            assert_eq!(super::u64(&b, 0).unwrap(), 1);
            assert!(super::u64(&b, 2).is_err());
            assert!(super::u64(&b, u64::MAX).is_err());
            assert_eq!(super::u8(&b, 8).unwrap(), 2);
            assert!(super::u8(&b, 9).is_err());
            assert!(super::tail(&b, 10).is_err());
        }
    }
}

/// An address the reader is asked to read at (or to add a field offset to): it must lie in
/// x86_64 user space, where adding an offset of a struct cannot wrap around. Each public
/// reader method checks its address with this first; a garbage word from the target is an
/// error there, never an overflow.
pub(crate) fn address(addr: u64) -> Result<u64> {
    if (0x1000..0x0000_8000_0000_0000).contains(&addr) {
        Ok(addr)
    } else {
        Err(Error::invalid(addr, format!("{addr:#x} is not a user-space address")))
    }
}

/// A user-space x86_64 pointer to something at least 8-byte aligned.
pub fn plausible_pointer(p: u64) -> bool {
    (0x1000..0x0000_8000_0000_0000).contains(&p) && p % 8 == 0
}

impl fmt::Debug for ObjectReader<crate::process::memory::FakeMemory> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader").field("version", &self.layout.version).finish()
    }
}
