//! Dicts (combined and split tables) and instance attributes (`__dict__`, managed dicts,
//! inline values).

use super::{address, flags, le, limits, Error, ObjectReader, Result};
use crate::process::memory::Memory;
use crate::python::layout::{AttrScheme, KeysFormat};

/// Where the values of a split table live.
#[derive(Debug, Clone, Copy)]
struct SplitValues {
    /// Address of `values[0]`.
    first: u64,
}

/// The shape of a `PyDictKeysObject`, decoded and checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeysShape {
    pub(super) entries: u64,
    pub(super) nentries: u64,
    pub(super) entry_size: u64,
    pub(super) key_at: u64,
    pub(super) value_at: u64,
}

/// Bytes read at once from a keys table whose entries may follow: a table of 8 slots whole.
const SMALL_KEYS: usize = 256;

/// Live entries among `raw` (consecutive entries from index `first`), appended to `out` up to
/// `max`; `vals` are the split values of the same entries.
fn decode_entries(
    shape: KeysShape,
    raw: &[u8],
    vals: Option<&[u64]>,
    first: u64,
    max: usize,
    out: &mut Vec<(u64, u64, u64)>,
) -> Result<()> {
    for j in 0..raw.len() / shape.entry_size as usize {
        if out.len() >= max {
            break;
        }
        let e = &raw[j * shape.entry_size as usize..];
        let key = le::u64(e, shape.key_at)?;
        let value = match vals {
            Some(v) => *v.get(j).ok_or_else(|| Error::invalid(shape.entries, "fewer split values than entries"))?,
            None => le::u64(e, shape.value_at)?,
        };
        if key == 0 || value == 0 {
            continue;
        }
        if !super::plausible_pointer(key) || !super::plausible_pointer(value) {
            return Err(Error::invalid(shape.entries, "dict entry is not a pointer"));
        }
        out.push((first + j as u64, key, value));
    }
    Ok(())
}

impl<M: Memory> ObjectReader<M> {
    /// `len(d)` (`ma_used`) of a dict or dict subclass.
    pub fn dict_len(&self, dict: u64) -> Result<u64> {
        let dict = address(dict)?;
        self.expect_dict(dict)?;
        let used = self.i64(dict + self.layout.dict.ma_used)?;
        if !(0..=1 << 40).contains(&used) {
            return Err(Error::invalid(dict, format!("dict ma_used {used}")));
        }
        Ok(used as u64)
    }

    /// The live `(key, value)` pointers of a dict, in insertion order, at most `max`.
    pub fn dict_entries(&self, dict: u64, max: usize) -> Result<Vec<(u64, u64)>> {
        let dict = address(dict)?;
        self.expect_dict(dict)?;
        let (keys, values) = self.dict_tables(dict)?;
        self.keys_entries(keys, values, max)
    }

    /// `d[name]` for a dict whose keys are strings: the value pointer, or `None`.
    pub fn dict_get_str(&self, dict: u64, name: &str) -> Result<Option<u64>> {
        let dict = address(dict)?;
        self.expect_dict(dict)?;
        let (keys, values) = self.dict_tables(dict)?;
        self.keys_lookup_str(keys, values, name)
    }

    /// `d[key]` where the key is compared by identity (objects hashed by `id`, like loops).
    ///
    /// Two reads for a small combined dict (the sampler asks `_current_tasks[loop]` at every
    /// busy sample): the dict's type and table pointers together, then the keys table's header
    /// with its first bytes, which hold a small table whole.
    pub fn dict_get_identity(&self, dict: u64, key: u64) -> Result<Option<u64>> {
        let dict = address(dict)?;
        let (d, o) = (&self.layout.dict, &self.layout.object);
        let word = |b: &[u8], at: u64| le::u64(b, at);
        let block = self.bytes(dict, o.ob_type.max(d.ma_keys).max(d.ma_values) as usize + 8)?;
        let tp = word(&block, o.ob_type)?;
        if tp == 0 || !super::plausible_pointer(tp) {
            return Err(Error::invalid(dict + o.ob_type, format!("{tp:#x} is not an object pointer")));
        }
        let info = self.type_info(tp)?;
        if !info.has(flags::DICT_SUBCLASS) {
            return Err(Error::invalid(dict, format!("expected dict, found {}", info.name)));
        }
        let keys = word(&block, d.ma_keys)?;
        if keys == 0 || !super::plausible_pointer(keys) {
            return Err(Error::invalid(dict + d.ma_keys, format!("{keys:#x} is not an object pointer")));
        }
        let values = word(&block, d.ma_values)?;
        if values != 0 && !super::plausible_pointer(values) {
            return Err(Error::invalid(dict + d.ma_values, format!("{values:#x} is not a pointer")));
        }
        let split = (values != 0).then_some(SplitValues { first: values + d.values_header });
        let entries = match (split, self.bytes(keys, SMALL_KEYS)) {
            (None, Ok(head)) => {
                let shape = self.keys_shape_in(keys, &head)?;
                let start = (shape.entries - keys) as usize;
                let end = start + (shape.nentries * shape.entry_size) as usize;
                if end <= head.len() {
                    let mut out = Vec::new();
                    decode_entries(shape, &head[start..end], None, 0, limits::ITEMS, &mut out)?;
                    out
                } else {
                    self.keys_entries_indexed(shape, None, limits::ITEMS)?
                }
            }
            _ => self.keys_entries_indexed(self.keys_shape(keys)?, split, limits::ITEMS)?,
        };
        Ok(entries.into_iter().find(|(_, k, _)| *k == key).map(|(_, _, v)| v))
    }

    fn expect_dict(&self, dict: u64) -> Result<()> {
        let info = self.type_info_of(dict)?;
        if !info.has(flags::DICT_SUBCLASS) {
            return Err(Error::invalid(dict, format!("expected dict, found {}", info.name)));
        }
        Ok(())
    }

    fn dict_tables(&self, dict: u64) -> Result<(u64, Option<SplitValues>)> {
        let d = &self.layout.dict;
        let keys = self.obj_ptr(dict + d.ma_keys)?;
        let values = self.ptr(dict + d.ma_values)?;
        let split = (values != 0).then_some(SplitValues { first: values + d.values_header });
        Ok((keys, split))
    }

    pub(super) fn keys_shape(&self, keys: u64) -> Result<KeysShape> {
        let head = self.bytes(keys, self.keys_head_len())?;
        self.keys_shape_in(keys, &head)
    }

    /// Bytes of a keys table's header.
    fn keys_head_len(&self) -> usize {
        match self.layout.dict.keys_format {
            KeysFormat::Sized => 40,
            KeysFormat::Log2 => 32,
        }
    }

    /// The shape of the keys table at `keys`, from its first bytes (at least
    /// `keys_head_len()` of them).
    fn keys_shape_in(&self, keys: u64, head: &[u8]) -> Result<KeysShape> {
        match self.layout.dict.keys_format {
            KeysFormat::Sized => {
                let size = le::i64(head, 8)?;
                let nentries = le::i64(head, 32)?;
                if size == 1 && nentries == 0 {
                    // `Py_EMPTY_KEYS`, shared by every empty dict.
                    return Ok(KeysShape { entries: keys + 48, nentries: 0, entry_size: 24, key_at: 8, value_at: 16 });
                }
                if !(8..=1 << limits::DICT_LOG2_SIZE).contains(&size) || size & (size - 1) != 0 {
                    return Err(Error::invalid(keys, format!("dict keys size {size}")));
                }
                if nentries < 0 || nentries > size {
                    return Err(Error::invalid(keys, format!("dict nentries {nentries} of {size}")));
                }
                let width = match size {
                    s if s <= 0xff => 1,
                    s if s <= 0xffff => 2,
                    s if s <= 0xffff_ffff => 4,
                    _ => 8,
                };
                Ok(KeysShape {
                    entries: keys + 40 + (size as u64) * width,
                    nentries: nentries as u64,
                    entry_size: 24,
                    key_at: 8,
                    value_at: 16,
                })
            }
            KeysFormat::Log2 => {
                let (log2_size, log2_index_bytes, kind) = (le::u8(head, 8)?, le::u8(head, 9)?, le::u8(head, 10)?);
                let nentries = le::i64(head, 24)?;
                if log2_size == 0 && nentries == 0 {
                    // `Py_EMPTY_KEYS`, shared by every empty dict.
                    return Ok(KeysShape { entries: keys + 32, nentries: 0, entry_size: 16, key_at: 0, value_at: 8 });
                }
                if !(3..=limits::DICT_LOG2_SIZE).contains(&log2_size)
                    || log2_index_bytes < log2_size
                    || log2_index_bytes > log2_size + 3
                    || kind > 2
                {
                    return Err(Error::invalid(
                        keys,
                        format!("dict keys log2_size {log2_size} index_bytes {log2_index_bytes} kind {kind}"),
                    ));
                }
                if nentries < 0 || nentries > 1 << log2_size {
                    return Err(Error::invalid(keys, format!("dict nentries {nentries}")));
                }
                let general = kind == 0;
                Ok(KeysShape {
                    entries: keys + 32 + (1u64 << log2_index_bytes),
                    nentries: nentries as u64,
                    entry_size: if general { 24 } else { 16 },
                    key_at: if general { 8 } else { 0 },
                    value_at: if general { 16 } else { 8 },
                })
            }
        }
    }

    /// Walk a keys table (with split values when given), yielding live entries.
    fn keys_entries(&self, keys: u64, values: Option<SplitValues>, max: usize) -> Result<Vec<(u64, u64)>> {
        let shape = self.keys_shape(keys)?;
        Ok(self.keys_entries_indexed(shape, values, max)?.into_iter().map(|(_, k, v)| (k, v)).collect())
    }

    /// Live entries with their index in the entries table.
    fn keys_entries_indexed(&self, shape: KeysShape, values: Option<SplitValues>, max: usize) -> Result<Vec<(u64, u64, u64)>> {
        let mut out = Vec::new();
        let chunk = 2048u64;
        let mut i = 0u64;
        let max = max.min(limits::ITEMS);
        while i < shape.nentries && out.len() < max {
            let n = chunk.min(shape.nentries - i);
            let raw = self.bytes(shape.entries + i * shape.entry_size, (n * shape.entry_size) as usize)?;
            let vals = match values {
                Some(v) => Some(self.pointer_array(v.first + i * 8, n as usize)?),
                None => None,
            };
            decode_entries(shape, &raw, vals.as_deref(), i, max, &mut out)?;
            i += n;
        }
        Ok(out)
    }

    fn keys_lookup_str(&self, keys: u64, values: Option<SplitValues>, name: &str) -> Result<Option<u64>> {
        let shape = self.keys_shape(keys)?;
        // Fast path: the entry where this name was found last time, if it still holds the
        // same (interned) key object.
        let cache_key = (keys, name.to_string());
        if let Some(&(index, key)) = self.lookups.borrow().get(&cache_key) {
            if index < shape.nentries {
                let entry = self.bytes(shape.entries + index * shape.entry_size, shape.entry_size as usize)?;
                let at = |o: u64| le::u64(&entry, o);
                if at(shape.key_at)? == key {
                    let value = match values {
                        Some(v) => self.u64(v.first + index * 8)?,
                        None => at(shape.value_at)?,
                    };
                    if value == 0 {
                        return Ok(None);
                    }
                    if !super::plausible_pointer(value) {
                        return Err(Error::invalid(keys, "dict value is not a pointer"));
                    }
                    return Ok(Some(value));
                }
            }
        }
        for (index, k, v) in self.keys_entries_indexed(shape, values, limits::ITEMS)? {
            if self.str_equals(k, name)? {
                let mut cache = self.lookups.borrow_mut();
                if cache.len() > 4096 {
                    cache.clear();
                }
                cache.insert(cache_key, (index, k));
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The value of instance attribute `name` (from the instance `__dict__`, however this
    /// version stores it), or `None` when the instance has no such attribute.
    pub fn getattr(&self, obj: u64, name: &str) -> Result<Option<u64>> {
        let obj = address(obj)?;
        let tp = self.type_info_of(obj)?;
        let managed = tp.has(flags::MANAGED_DICT);
        match self.layout.attrs {
            AttrScheme::DictOffset => {}
            AttrScheme::PreHeader if managed => {
                let dict = self.ptr(Self::offset(obj, -24)?)?;
                if dict != 0 {
                    return self.dict_get_str(dict, name);
                }
                let values = self.ptr(Self::offset(obj, -32)?)?;
                if values == 0 {
                    return Ok(None);
                }
                let keys = self.obj_ptr(tp.addr + self.layout.types.ht_cached_keys)?;
                return self.keys_lookup_str(keys, Some(SplitValues { first: values }), name);
            }
            AttrScheme::TaggedDictOrValues if managed => {
                let tagged = self.u64(Self::offset(obj, -24)?)?;
                if tagged == 0 {
                    return Ok(None);
                }
                if tagged & 1 == 1 {
                    let first = tagged.wrapping_add(1);
                    if !super::plausible_pointer(first) {
                        return Err(Error::invalid(obj, "bad tagged values pointer"));
                    }
                    let keys = self.obj_ptr(tp.addr + self.layout.types.ht_cached_keys)?;
                    return self.keys_lookup_str(keys, Some(SplitValues { first }), name);
                }
                if !super::plausible_pointer(tagged) {
                    return Err(Error::invalid(obj, "bad managed dict pointer"));
                }
                return self.dict_get_str(tagged, name);
            }
            AttrScheme::InlineValues { managed_dict } if managed => {
                if tp.has(flags::INLINE_VALUES) {
                    let values = obj + tp.basicsize as u64;
                    let valid = self.u8(values + 3)?;
                    if valid != 0 {
                        let keys = self.obj_ptr(tp.addr + self.layout.types.ht_cached_keys)?;
                        let first = values + self.layout.dict.values_header;
                        return self.keys_lookup_str(keys, Some(SplitValues { first }), name);
                    }
                }
                let dict = self.ptr(Self::offset(obj, managed_dict)?)?;
                if dict == 0 {
                    return Ok(None);
                }
                return self.dict_get_str(dict, name);
            }
            _ => {}
        }
        // A plain tp_dictoffset (every version, for types without a managed dict).
        if tp.dictoffset == 0 {
            return Ok(None);
        }
        if tp.dictoffset < 0 {
            return Err(Error::invalid(obj, "negative tp_dictoffset (variable-size object) is not supported"));
        }
        let dict = self.ptr(obj + tp.dictoffset as u64)?;
        if dict == 0 {
            return Ok(None);
        }
        self.dict_get_str(dict, name)
    }

    /// Like [`getattr`](Self::getattr), but a missing attribute is an error naming it.
    pub fn attr(&self, obj: u64, name: &str) -> Result<u64> {
        let obj = address(obj)?;
        self.getattr(obj, name)?.ok_or_else(|| Error::invalid(obj, format!("object has no attribute {name}")))
    }
}
