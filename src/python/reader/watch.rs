//! Watched locations: where the value of an attribute (or a dict entry) lives, and what must
//! still hold for that place to be it.
//!
//! A program may rebind any attribute at any time (asyncio's `_run_once` replaces
//! `loop._scheduled` with a new list whenever it compacts the timer heap), and the old object
//! is freed and its memory reused. So a sampler must not keep reading an object it resolved
//! once: each sample reads the attribute's slot again, together with the few words that prove
//! the slot is still the attribute's (the instance's dict or values pointer, the keys table,
//! the key in its entry). All of them go in the sample's one batched read; when a check fails
//! the attribute is resolved again from scratch.

use super::{flags, Error, ObjectReader, Result};
use crate::process::memory::Memory;
use crate::python::layout::AttrScheme;

/// A word that must read as `expect` under `mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub addr: u64,
    pub mask: u64,
    pub expect: u64,
}

impl Check {
    fn eq(addr: u64, expect: u64) -> Check {
        Check { addr, mask: u64::MAX, expect }
    }
}

/// Where a value pointer lives (`slot`), valid while every check holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Watch {
    pub checks: Vec<Check>,
    pub slot: u64,
}

impl Watch {
    /// A place that needs no proof (a C struct field of an object already checked).
    pub fn field(slot: u64) -> Watch {
        Watch { checks: Vec::new(), slot }
    }

    /// The addresses to read, checks first, the slot last: `len()` words.
    pub fn addrs(&self) -> impl Iterator<Item = u64> + '_ {
        self.checks.iter().map(|c| c.addr).chain(std::iter::once(self.slot))
    }

    pub fn len(&self) -> usize {
        self.checks.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The slot's value, if `words` (read at [`addrs`](Self::addrs)) show that it is still the
    /// watched place; `None` when a check failed.
    pub fn value(&self, words: &[u64]) -> Option<u64> {
        let ok = self.checks.iter().zip(words).all(|(c, w)| w & c.mask == c.expect);
        (ok && words.len() == self.len()).then(|| words[self.checks.len()])
    }

    /// Read the words and give the slot's value (`None`: moved, resolve again). For a single
    /// look; samplers batch [`addrs`](Self::addrs) with their other reads.
    pub fn read<M: Memory>(&self, r: &ObjectReader<M>) -> Result<Option<u64>> {
        let ranges: Vec<(u64, usize)> = self.addrs().map(|a| (a, 8)).collect();
        let mut buf = vec![0u8; 8 * ranges.len()];
        let n = r.memory().read_many(&ranges, &mut buf)?;
        if n < buf.len() {
            return Ok(None);
        }
        Ok(self.value(&words_of(&buf)))
    }
}

/// Little-endian words of a buffer read from the target.
pub fn words_of(buf: &[u8]) -> Vec<u64> {
    buf.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

impl<M: Memory> ObjectReader<M> {
    /// Where instance attribute `name` of `obj` lives, however this version stores it;
    /// `None` when the object has no such attribute.
    pub fn watch_attr(&self, obj: u64, name: &str) -> Result<Option<Watch>> {
        let tp = self.type_info_of(obj)?;
        let mut checks = vec![Check::eq(obj + self.layout.object.ob_type, tp.addr)];
        let managed = tp.has(flags::MANAGED_DICT);
        let cached_keys = tp.addr + self.layout.types.ht_cached_keys;
        match self.layout.attrs {
            AttrScheme::PreHeader if managed => {
                let dict_at = Self::offset(obj, -24)?;
                let dict = self.ptr(dict_at)?;
                checks.push(Check::eq(dict_at, dict));
                if dict != 0 {
                    return self.watch_in_dict(dict, name, checks);
                }
                let values_at = Self::offset(obj, -32)?;
                let values = self.ptr(values_at)?;
                if values == 0 {
                    return Ok(None);
                }
                checks.push(Check::eq(values_at, values));
                self.watch_in_shared_keys(cached_keys, values, name, checks)
            }
            AttrScheme::TaggedDictOrValues if managed => {
                let at = Self::offset(obj, -24)?;
                let tagged = self.u64(at)?;
                checks.push(Check::eq(at, tagged));
                match tagged {
                    0 => Ok(None),
                    t if t & 1 == 1 => {
                        let values = t.wrapping_add(1);
                        if !super::plausible_pointer(values) {
                            return Err(Error::invalid(obj, "bad tagged values pointer"));
                        }
                        self.watch_in_shared_keys(cached_keys, values, name, checks)
                    }
                    dict if super::plausible_pointer(dict) => self.watch_in_dict(dict, name, checks),
                    _ => Err(Error::invalid(obj, "bad managed dict pointer")),
                }
            }
            AttrScheme::InlineValues { managed_dict } if managed => {
                if tp.has(flags::INLINE_VALUES) {
                    let values = obj + tp.basicsize as u64;
                    // `PyDictValues`: capacity, size, embedded, valid (byte 3).
                    let valid = self.u8(values + 3)?;
                    checks.push(Check { addr: values, mask: 0xff << 24, expect: (valid as u64) << 24 });
                    if valid != 0 {
                        let first = values + self.layout.dict.values_header;
                        return self.watch_in_shared_keys(cached_keys, first, name, checks);
                    }
                }
                let dict_at = Self::offset(obj, managed_dict)?;
                let dict = self.ptr(dict_at)?;
                checks.push(Check::eq(dict_at, dict));
                match dict {
                    0 => Ok(None),
                    d => self.watch_in_dict(d, name, checks),
                }
            }
            _ => {
                if tp.dictoffset <= 0 {
                    return Ok(None);
                }
                let dict_at = obj + tp.dictoffset as u64;
                let dict = self.ptr(dict_at)?;
                checks.push(Check::eq(dict_at, dict));
                match dict {
                    0 => Ok(None),
                    d => self.watch_in_dict(d, name, checks),
                }
            }
        }
    }

    /// Where `d[name]` lives in dict `dict` (string keys).
    pub fn watch_dict_key(&self, dict: u64, name: &str) -> Result<Option<Watch>> {
        self.watch_in_dict(dict, name, Vec::new())
    }

    fn watch_in_dict(&self, dict: u64, name: &str, mut checks: Vec<Check>) -> Result<Option<Watch>> {
        let info = self.type_info_of(dict)?;
        if !info.has(flags::DICT_SUBCLASS) {
            return Err(Error::invalid(dict, format!("expected dict, found {}", info.name)));
        }
        checks.push(Check::eq(dict + self.layout.object.ob_type, info.addr));
        let d = &self.layout.dict;
        let keys = self.obj_ptr(dict + d.ma_keys)?;
        let values = self.ptr(dict + d.ma_values)?;
        checks.push(Check::eq(dict + d.ma_keys, keys));
        checks.push(Check::eq(dict + d.ma_values, values));
        let Some((index, key_at, key, entry)) = self.keys_index_of(keys, name)? else { return Ok(None) };
        checks.push(Check::eq(key_at, key));
        let slot = match values {
            0 => entry.value_slot,
            v => v + d.values_header + 8 * index,
        };
        Ok(Some(Watch { checks, slot }))
    }

    fn watch_in_shared_keys(&self, keys_at: u64, first_value: u64, name: &str, mut checks: Vec<Check>) -> Result<Option<Watch>> {
        let keys = self.obj_ptr(keys_at)?;
        checks.push(Check::eq(keys_at, keys));
        let Some((index, key_at, key, _)) = self.keys_index_of(keys, name)? else { return Ok(None) };
        checks.push(Check::eq(key_at, key));
        Ok(Some(Watch { checks, slot: first_value + 8 * index }))
    }

    /// The entry of key `name` in a keys table: `(index, address of its key pointer, the key
    /// object, where a combined table keeps its value)`.
    fn keys_index_of(&self, keys: u64, name: &str) -> Result<Option<(u64, u64, u64, EntrySlots)>> {
        let shape = self.keys_shape(keys)?;
        let (entries, nentries, entry_size, key_off, value_off) =
            (shape.entries, shape.nentries, shape.entry_size, shape.key_at, shape.value_at);
        let chunk = 256u64;
        let mut i = 0u64;
        while i < nentries {
            let n = chunk.min(nentries - i);
            let raw = self.bytes(entries + i * entry_size, (n * entry_size) as usize)?;
            for j in 0..n {
                let at = (j * entry_size + key_off) as usize;
                let key = super::le::u64(&raw, at as u64)?;
                if key == 0 || !super::plausible_pointer(key) {
                    continue;
                }
                if self.str_equals(key, name)? {
                    let e = entries + (i + j) * entry_size;
                    return Ok(Some((i + j, e + key_off, key, EntrySlots { value_slot: e + value_off })));
                }
            }
            i += n;
        }
        Ok(None)
    }
}

/// Where a combined table keeps an entry's value.
#[derive(Debug, Clone, Copy)]
struct EntrySlots {
    value_slot: u64,
}
