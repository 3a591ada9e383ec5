//! Object headers, types and the simple value types (str, int, float, sequences).

use std::sync::Arc;

use super::{address, flags, le, limits, Error, ObjectReader, PyStr, Result};
use crate::process::memory::Memory;
use crate::python::layout::LongEncoding;

/// Text bytes read together with a string's header (covers most identifiers).
const STR_PREFETCH: usize = 48;

/// A decoded string header.
struct StrHead {
    obj: u64,
    length: usize,
    width: usize,
    is_ascii: bool,
    data: u64,
}

/// What we cache about a type object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    pub addr: u64,
    pub name: String,
    pub flags: u64,
    pub basicsize: i64,
    pub dictoffset: i64,
}

impl TypeInfo {
    pub fn has(&self, flag: u64) -> bool {
        self.flags & flag != 0
    }
}

impl<M: Memory> ObjectReader<M> {
    /// The type pointer of an object (whose address is checked first: it often comes from
    /// the target's memory).
    pub fn type_of(&self, obj: u64) -> Result<u64> {
        let obj = address(obj)?;
        if !super::plausible_pointer(obj) {
            return Err(Error::invalid(obj, "not an object address"));
        }
        self.obj_ptr(obj + self.layout.object.ob_type)
    }

    /// Facts about a type object, validated: its own type must be a type subclass.
    pub fn type_info(&self, tp: u64) -> Result<Arc<TypeInfo>> {
        let tp = address(tp)?;
        if let Some(info) = self.types.borrow().get(&tp) {
            return Ok(info.clone());
        }
        let t = &self.layout.types;
        let meta = self.type_of(tp)?;
        let meta_flags = self.u64(meta + t.tp_flags)?;
        if meta_flags & flags::TYPE_SUBCLASS == 0 {
            return Err(Error::invalid(tp, "not a type object"));
        }
        let name_ptr = self.data_ptr(tp + t.tp_name)?;
        let name = self.c_string(name_ptr, limits::TYPE_NAME)?;
        let info = Arc::new(TypeInfo {
            addr: tp,
            name,
            flags: self.u64(tp + t.tp_flags)?,
            basicsize: self.i64(tp + t.tp_basicsize)?,
            dictoffset: self.i64(tp + t.tp_dictoffset)?,
        });
        if info.basicsize < 0 || info.basicsize > 1 << 24 {
            return Err(Error::invalid(tp, format!("tp_basicsize {} is impossible", info.basicsize)));
        }
        self.types.borrow_mut().insert(tp, info.clone());
        Ok(info)
    }

    /// The type of `obj`, with its facts.
    pub fn type_info_of(&self, obj: u64) -> Result<Arc<TypeInfo>> {
        let obj = address(obj)?;
        self.type_info(self.type_of(obj)?)
    }

    /// `type(obj).__name__` as C sees it (`tp_name`, e.g. `"collections.deque"`).
    pub fn type_name(&self, obj: u64) -> Result<String> {
        let obj = address(obj)?;
        Ok(self.type_info_of(obj)?.name.clone())
    }

    /// Fail unless the object's type has the given fast-subclass flag.
    fn expect_flag(&self, obj: u64, flag: u64, what: &str) -> Result<Arc<TypeInfo>> {
        let info = self.type_info_of(obj)?;
        if !info.has(flag) {
            return Err(Error::invalid(obj, format!("expected {what}, found {}", info.name)));
        }
        Ok(info)
    }

    /// A NUL-terminated byte string of at most `max` bytes, printable ASCII only.
    pub fn c_string(&self, addr: u64, max: usize) -> Result<String> {
        let addr = address(addr)?;
        // Read in small chunks so a short string near the end of a mapping still reads.
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < max {
            let chunk = 32.min(max - out.len());
            let bytes = match self.bytes(at, chunk) {
                Ok(b) => b,
                Err(e) if chunk > 1 => {
                    // Retry byte by byte up to the end of the mapping.
                    let mut got = Vec::new();
                    for i in 0..chunk as u64 {
                        match self.u8(at + i) {
                            Ok(b) => got.push(b),
                            Err(_) if !got.is_empty() || !out.is_empty() => break,
                            Err(_) => return Err(e),
                        }
                    }
                    got
                }
                Err(e) => return Err(e),
            };
            if let Some(nul) = bytes.iter().position(|b| *b == 0) {
                out.extend_from_slice(&bytes[..nul]);
                return ascii(addr, out);
            }
            if bytes.len() < chunk {
                break;
            }
            out.extend_from_slice(&bytes);
            at += chunk as u64;
        }
        Err(Error::invalid(addr, "C string is not terminated"))
    }

    /// Decode a `str` (or subclass), at most [`limits::STR_CHARS`] code points.
    pub fn str(&self, obj: u64) -> Result<PyStr> {
        let obj = address(obj)?;
        self.str_limited(obj, limits::STR_CHARS)
    }

    pub fn str_limited(&self, obj: u64, max_chars: usize) -> Result<PyStr> {
        let obj = address(obj)?;
        let (head, block) = self.str_head(obj)?;
        let n = head.length.min(max_chars);
        let raw = self.str_data(&head, &block, n)?;
        let text = decode_str(&raw, head.width, head.is_ascii).ok_or_else(|| Error::invalid(obj, "ascii str holds non-ascii bytes"))?;
        Ok(PyStr { text, truncated: n < head.length, chars: head.length })
    }

    /// Is `obj` a `str` equal to `expected`? Compares lengths before reading any text, so
    /// scanning a dict for a key costs one read per non-matching key. Objects that are not
    /// strings are simply not equal.
    pub fn str_equals(&self, obj: u64, expected: &str) -> Result<bool> {
        let obj = address(obj)?;
        let (head, block) = match self.str_head(obj) {
            Ok(h) => h,
            Err(Error::Invalid { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        // A str's length is in code points; for ASCII (the usual key) that is bytes.
        let want = expected.chars().count();
        if head.length != want {
            return Ok(false);
        }
        let raw = self.str_data(&head, &block, want)?;
        Ok(decode_str(&raw, head.width, head.is_ascii).is_some_and(|t| t == expected))
    }

    /// One read for the header of a str (and, usually, its text).
    fn str_head(&self, obj: u64) -> Result<(StrHead, Vec<u8>)> {
        let s = &self.layout.str;
        // Read the header plus a little text in one go; near the end of a mapping that can
        // fault, so fall back to the smallest header (a compact ASCII string's).
        let block = match self.bytes(obj, s.compact_data as usize + 8 + STR_PREFETCH) {
            Ok(b) => b,
            Err(_) => self.bytes(obj, s.ascii_data as usize)?,
        };
        let word = |at: u64| le::u64(&block, at);
        let tp = word(self.layout.object.ob_type)?;
        if !super::plausible_pointer(tp) || !self.type_info(tp)?.has(flags::UNICODE_SUBCLASS) {
            return Err(Error::invalid(obj, "expected str"));
        }
        let length = word(s.length)? as i64;
        if !(0..=(1 << 40)).contains(&length) {
            return Err(Error::invalid(obj, format!("str length {length}")));
        }
        let state = le::u32(&block, s.state)?;
        let kind = (state >> s.kind_shift) & 0b111;
        let compact = state >> s.compact_bit & 1 == 1;
        let is_ascii = state >> s.ascii_bit & 1 == 1;
        let width = match kind {
            1 | 2 | 4 => kind as usize,
            _ => return Err(Error::invalid(obj, format!("str kind {kind}"))),
        };
        if is_ascii && width != 1 {
            return Err(Error::invalid(obj, "ascii str with wide kind"));
        }
        let data = match (compact, is_ascii) {
            (true, true) => obj + s.ascii_data,
            (true, false) => obj + s.compact_data,
            (false, _) => {
                let p = self.u64(obj + s.compact_data)?;
                if !super::plausible_pointer(p) {
                    return Err(Error::invalid(obj, "legacy str data pointer"));
                }
                p
            }
        };
        Ok((StrHead { obj, length: length as usize, width, is_ascii, data }, block))
    }

    /// The first `n` code units of a string's text, from the prefetched block when it holds them.
    fn str_data(&self, head: &StrHead, block: &[u8], n: usize) -> Result<Vec<u8>> {
        let len = n * head.width;
        let start = head.data.wrapping_sub(head.obj) as usize;
        if head.data >= head.obj && start + len <= block.len() {
            return Ok(block[start..start + len].to_vec());
        }
        self.bytes(head.data, len)
    }

    /// A name (function, task, thread): whole when it has at most [`limits::NAME_CHARS`]
    /// code points, else its start and a visible mark of the cut (generated code and request
    /// data make long names; they are shown, never an error).
    pub fn name(&self, obj: u64) -> Result<String> {
        let obj = address(obj)?;
        let s = self.str_limited(obj, limits::NAME_CHARS)?;
        Ok(if s.truncated { format!("{}...[{} chars]", s.text, s.chars) } else { s.text })
    }

    /// Decode an `int` (or `bool`) that fits in an i64.
    pub fn int(&self, obj: u64) -> Result<i64> {
        let obj = address(obj)?;
        self.expect_flag(obj, flags::LONG_SUBCLASS, "int")?;
        let l = &self.layout.long;
        let raw = self.i64(obj + l.size_or_tag)?;
        let (ndigits, negative) = match l.encoding {
            LongEncoding::SignedSize => (raw.unsigned_abs(), raw < 0),
            LongEncoding::Tagged => {
                let tag = raw as u64;
                match tag & 3 {
                    0 => (tag >> 3, false),
                    1 => (0, false),
                    2 => (tag >> 3, true),
                    _ => return Err(Error::invalid(obj, "int sign bits 3")),
                }
            }
        };
        if ndigits > 3 {
            return Err(Error::invalid(obj, format!("int with {ndigits} digits does not fit in i64")));
        }
        let mut value: i128 = 0;
        for i in (0..ndigits).rev() {
            let digit = self.u32(obj + l.digits + 4 * i)?;
            if digit >= 1 << 30 {
                return Err(Error::invalid(obj, "int digit over 30 bits"));
            }
            value = (value << 30) | digit as i128;
        }
        if negative {
            value = -value;
        }
        i64::try_from(value).map_err(|_| Error::invalid(obj, "int does not fit in i64"))
    }

    /// Decode a `float` (exact type or subclass: checked by name because there is no
    /// fast-subclass flag for float).
    pub fn float(&self, obj: u64) -> Result<f64> {
        let obj = address(obj)?;
        // Type and value in one read.
        let at = self.layout.containers.float_value;
        let block = self.bytes(obj, at as usize + 8)?;
        let info = self.type_info(le::u64(&block, self.layout.object.ob_type)?)?;
        if info.name != "float" && !self.is_subclass_by_name(info.addr, "float")? {
            return Err(Error::invalid(obj, format!("expected float, found {}", info.name)));
        }
        le::f64(&block, at)
    }

    /// `ob_size` of a variable-size object (list, tuple, deque), checked non-negative.
    pub fn var_len(&self, obj: u64) -> Result<u64> {
        let obj = address(obj)?;
        check_len(obj, self.i64(obj + self.layout.object.ob_size)?)
    }

    /// Bytes at the start of a list (or deque) object that hold its type, `ob_size` and
    /// (for a list) its items pointer: what [`ObjectReader::list_head_in`] and
    /// [`ObjectReader::deque_len_in`] decode.
    pub fn list_head_span(&self) -> usize {
        let c = &self.layout;
        c.object.ob_size.max(c.containers.list_items).max(c.object.ob_type) as usize + 8
    }

    /// `(len, items pointer)` of a `list` (or subclass) from its first
    /// [`list_head_span`](ObjectReader::list_head_span) bytes, read by the caller. The items
    /// pointer is checked only when the list is not empty.
    pub fn list_head_in(&self, obj: u64, block: &[u8]) -> Result<(u64, u64)> {
        let c = &self.layout;
        let info = self.type_info(le::u64(block, c.object.ob_type)?)?;
        if !info.has(flags::LIST_SUBCLASS) {
            return Err(Error::invalid(obj, format!("expected list, found {}", info.name)));
        }
        let len = check_len(obj, le::i64(block, c.object.ob_size)?)?;
        let items = le::u64(block, c.containers.list_items)?;
        if len > 0 && !super::plausible_pointer(items) {
            return Err(Error::invalid(obj, "list items pointer"));
        }
        Ok((len, items))
    }

    /// `len(deque)` of a `collections.deque` (or subclass) from its first
    /// [`list_head_span`](ObjectReader::list_head_span) bytes, read by the caller.
    pub fn deque_len_in(&self, obj: u64, block: &[u8]) -> Result<u64> {
        let o = &self.layout.object;
        let info = self.type_info(le::u64(block, o.ob_type)?)?;
        if info.name != "collections.deque" && !self.is_subclass_by_name(info.addr, "collections.deque")? {
            return Err(Error::invalid(obj, format!("expected collections.deque, found {}", info.name)));
        }
        check_len(obj, le::i64(block, o.ob_size)?)
    }

    /// Length of a `list` (or subclass): [`list_head_in`](ObjectReader::list_head_in) on
    /// the bytes it needs, read here (the sampler reads them in a batch of its own).
    pub fn list_len(&self, obj: u64) -> Result<u64> {
        let obj = address(obj)?;
        let head = self.bytes(obj, self.list_head_span())?;
        Ok(self.list_head_in(obj, &head)?.0)
    }

    /// The item pointers of a list: at most `max`, plus the list's real length.
    pub fn list_items(&self, obj: u64, max: usize) -> Result<(Vec<u64>, u64)> {
        let obj = address(obj)?;
        // Type, length and the items pointer in one read.
        let head = self.bytes(obj, self.list_head_span())?;
        let (len, items) = self.list_head_in(obj, &head)?;
        let n = (len as usize).min(max).min(limits::ITEMS);
        if n == 0 {
            return Ok((Vec::new(), len));
        }
        Ok((self.pointer_array(items, n)?, len))
    }

    /// The item pointers of a tuple: at most `max`, plus its real length.
    pub fn tuple_items(&self, obj: u64, max: usize) -> Result<(Vec<u64>, u64)> {
        let obj = address(obj)?;
        self.expect_flag(obj, flags::TUPLE_SUBCLASS, "tuple")?;
        let len = self.var_len(obj)?;
        let n = (len as usize).min(max).min(limits::ITEMS);
        Ok((self.pointer_array(obj + self.layout.containers.tuple_items, n)?, len))
    }

    /// `n` consecutive pointers starting at `addr` (one read).
    pub fn pointer_array(&self, addr: u64, n: usize) -> Result<Vec<u64>> {
        let addr = address(addr)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let raw = self.bytes(addr, n * 8)?;
        Ok(raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect())
    }

    /// `len(deque)` of a `collections.deque` (or subclass): [`deque_len_in`]
    /// (ObjectReader::deque_len_in) on the bytes it needs, read here.
    pub fn deque_len(&self, obj: u64) -> Result<u64> {
        let obj = address(obj)?;
        let head = self.bytes(obj, self.list_head_span())?;
        self.deque_len_in(obj, &head)
    }

    /// Live keys of a `set` or `frozenset`, told apart as the interpreter does: an entry with
    /// a NULL key is free and one whose hash is −1 is a tombstone (the dummy key: no real
    /// object hashes to −1); the walk stops once `used` live keys were found, or at `max`.
    /// Also gives `len()` (more than the keys returned when cut at `max`).
    pub fn set_keys(&self, obj: u64, max: usize) -> Result<(Vec<u64>, u64)> {
        let obj = address(obj)?;
        let info = self.type_info_of(obj)?;
        let is_set = matches!(info.name.as_str(), "set" | "frozenset")
            || self.is_subclass_by_name(info.addr, "set")?
            || self.is_subclass_by_name(info.addr, "frozenset")?;
        if !is_set {
            return Err(Error::invalid(obj, format!("expected set, found {}", info.name)));
        }
        let c = &self.layout.containers;
        let (lo, hi) = (c.set_used.min(c.set_mask).min(c.set_table), c.set_used.max(c.set_mask).max(c.set_table) + 8);
        let head = self.bytes(obj + lo, (hi - lo) as usize)?;
        let at = |off: u64| le::u64(&head, off - lo);
        let (used, mask, table) = (at(c.set_used)? as i64, at(c.set_mask)? as i64, at(c.set_table)?);
        if used < 0 || !(0..=(1 << 30)).contains(&mask) || (mask + 1) & mask != 0 || used > mask + 1 {
            return Err(Error::invalid(obj, format!("set used {used} mask {mask}")));
        }
        if used > 0 && !super::plausible_pointer(table) {
            return Err(Error::invalid(obj, "set table pointer"));
        }
        let want = (used as usize).min(max).min(limits::ITEMS);
        let slots = (mask + 1) as usize;
        let mut out = Vec::with_capacity(want);
        let chunk = 4096usize;
        let mut i = 0;
        while i < slots && out.len() < want {
            let n = chunk.min(slots - i);
            let raw = self.bytes(table + (i as u64) * 16, n * 16)?;
            for e in raw.chunks_exact(16) {
                let (key, hash) = (le::u64(e, 0)?, le::i64(e, 8)?);
                if key == 0 || hash == -1 {
                    continue;
                }
                if !super::plausible_pointer(key) {
                    return Err(Error::invalid(table, "set entry is not a pointer"));
                }
                out.push(key);
                if out.len() >= want {
                    break;
                }
            }
            i += n;
        }
        Ok((out, used as u64))
    }

    /// The object a weak reference points to, or `None` when it is dead.
    pub fn weakref_target(&self, wr: u64) -> Result<Option<u64>> {
        let wr = address(wr)?;
        let target = self.ptr(wr + self.layout.containers.weakref_object)?;
        if target == 0 || self.type_name(target)? == "NoneType" {
            return Ok(None);
        }
        Ok(Some(target))
    }

    /// Is the type at `tp` a subclass of a type named `name`? Walks `tp_mro` (once per
    /// type and name; the answer is cached).
    pub fn is_subclass_by_name(&self, tp: u64, name: &str) -> Result<bool> {
        let tp = address(tp)?;
        let key = (tp, name.to_string());
        if let Some(answer) = self.subclasses.borrow().get(&key) {
            return Ok(*answer);
        }
        let mut answer = false;
        for t in self.mro(tp)? {
            if self.type_info(t)?.name == name {
                answer = true;
                break;
            }
        }
        self.subclasses.borrow_mut().insert(key, answer);
        Ok(answer)
    }

    /// The types of `tp.__mro__`, or just `[tp]` when the type has no MRO yet.
    pub fn mro(&self, tp: u64) -> Result<Vec<u64>> {
        let tp = address(tp)?;
        let mro = self.ptr(tp + self.layout.types.tp_mro)?;
        if mro == 0 {
            return Ok(vec![tp]);
        }
        let (items, len) = self.tuple_items(mro, limits::MRO)?;
        if len as usize > limits::MRO {
            return Err(Error::invalid(mro, format!("MRO of {len} types")));
        }
        Ok(items)
    }

    /// The byte offset of a `__slots__` member (`member_descriptor`) named `name`, looked up
    /// through the MRO of `tp`.
    pub fn slot_offset(&self, tp: u64, name: &str) -> Result<Option<u64>> {
        let tp = address(tp)?;
        for t in self.mro(tp)? {
            let dict = self.ptr(t + self.layout.types.tp_dict)?;
            if dict == 0 {
                continue;
            }
            let Some(descr) = self.dict_get_str(dict, name)? else { continue };
            if self.type_name(descr)? != "member_descriptor" {
                return Ok(None);
            }
            let m = &self.layout.member;
            let def = self.data_ptr(descr + m.descr_member)?;
            let offset = self.i64(def + m.def_offset)?;
            let basic = self.type_info(tp)?.basicsize;
            if offset < self.layout.object.head as i64 || offset + 8 > basic {
                return Err(Error::invalid(descr, format!("slot offset {offset} outside basicsize {basic}")));
            }
            return Ok(Some(offset as u64));
        }
        Ok(None)
    }

    /// Is `obj` the `None` singleton?
    pub fn is_none(&self, obj: u64) -> Result<bool> {
        let obj = address(obj)?;
        Ok(self.type_info_of(obj)?.name == "NoneType")
    }
}

fn check_len(obj: u64, n: i64) -> Result<u64> {
    if !(0..=1 << 40).contains(&n) {
        return Err(Error::invalid(obj, format!("length {n}")));
    }
    Ok(n as u64)
}

fn ascii(addr: u64, bytes: Vec<u8>) -> Result<String> {
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        Ok(String::from_utf8(bytes).expect("checked ascii"))
    } else {
        Err(Error::invalid(addr, "C string is not printable ASCII"))
    }
}

/// Decode `width`-byte code units; `None` when an ASCII string holds a byte ≥ 0x80.
fn decode_str(raw: &[u8], width: usize, is_ascii: bool) -> Option<String> {
    match width {
        1 if is_ascii => {
            if raw.iter().any(|b| *b >= 0x80) {
                return None;
            }
            Some(raw.iter().map(|b| *b as char).collect())
        }
        1 => Some(raw.iter().map(|b| *b as char).collect()),
        2 => Some(raw.chunks_exact(2).map(|c| char::from_u32(u16::from_le_bytes([c[0], c[1]]) as u32).unwrap_or('\u{fffd}')).collect()),
        _ => Some(raw.chunks_exact(4).map(|c| char::from_u32(u32::from_le_bytes(c.try_into().unwrap())).unwrap_or('\u{fffd}')).collect()),
    }
}
