//! Reader tests on object graphs built byte by byte in the test, for several layouts, plus
//! truncated and garbage input.

use proptest::prelude::*;

use super::*;
use crate::process::memory::FakeMemory;
use crate::python::layout::{for_version, AttrScheme, KeysFormat, LongEncoding, PyVersion};

/// Builds fake CPython objects for one layout into a [`FakeMemory`].
pub(crate) struct Heap {
    pub mem: FakeMemory,
    pub layout: &'static Layout,
    next: u64,
    pub type_type: u64,
    pub str_type: u64,
    pub int_type: u64,
    pub float_type: u64,
    pub list_type: u64,
    pub tuple_type: u64,
    pub dict_type: u64,
    pub deque_type: u64,
    pub none: u64,
}

impl Heap {
    pub fn new(minor: u8) -> Heap {
        let layout = for_version(PyVersion::new(3, minor)).expect("layout row");
        let mut h = Heap {
            mem: FakeMemory::new(),
            layout,
            next: 0x10_0000,
            type_type: 0,
            str_type: 0,
            int_type: 0,
            float_type: 0,
            list_type: 0,
            tuple_type: 0,
            dict_type: 0,
            deque_type: 0,
            none: 0,
        };
        // `type` is its own type.
        h.type_type = h.reserve(1024);
        h.write_type(h.type_type, h.type_type, "type", flags::TYPE_SUBCLASS, 880, 0);
        h.str_type = h.new_type("str", flags::UNICODE_SUBCLASS, 64);
        h.int_type = h.new_type("int", flags::LONG_SUBCLASS, 24);
        h.float_type = h.new_type("float", 0, 24);
        h.list_type = h.new_type("list", flags::LIST_SUBCLASS, 40);
        h.tuple_type = h.new_type("tuple", flags::TUPLE_SUBCLASS, 24);
        h.dict_type = h.new_type("dict", flags::DICT_SUBCLASS, 48);
        h.deque_type = h.new_type("collections.deque", 0, 216);
        let none_type = h.new_type("NoneType", 0, 16);
        h.none = h.object(none_type, 16);
        h
    }

    pub fn reader(&self) -> ObjectReader<&FakeMemory> {
        ObjectReader::new(&self.mem, self.layout)
    }

    /// Reserve `size` zeroed bytes (16-aligned) and map them.
    pub fn reserve(&mut self, size: u64) -> u64 {
        let addr = self.next;
        self.next += (size + 64 + 15) & !15;
        self.mem.map(addr, vec![0; size as usize]);
        addr
    }

    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        assert!(self.mem.write(addr, bytes), "test wrote outside its reserved memory at {addr:#x}");
    }

    pub fn write_u64(&mut self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }

    pub fn write_i64(&mut self, addr: u64, v: i64) {
        self.write(addr, &v.to_le_bytes());
    }

    fn write_type(&mut self, at: u64, meta: u64, name: &str, tp_flags: u64, basicsize: i64, dictoffset: i64) {
        let t = self.layout.types;
        let name_at = self.reserve(name.len() as u64 + 1);
        let mut cname = name.as_bytes().to_vec();
        cname.push(0);
        self.write(name_at, &cname);
        self.write_u64(at + self.layout.object.ob_type, meta);
        self.write_u64(at + t.tp_name, name_at);
        self.write_u64(at + t.tp_flags, tp_flags);
        self.write_i64(at + t.tp_basicsize, basicsize);
        self.write_i64(at + t.tp_dictoffset, dictoffset);
    }

    pub fn new_type(&mut self, name: &str, tp_flags: u64, basicsize: i64) -> u64 {
        let at = self.reserve(1024);
        self.write_type(at, self.type_type, name, tp_flags, basicsize, 0);
        at
    }

    pub fn new_type_with(&mut self, name: &str, tp_flags: u64, basicsize: i64, dictoffset: i64) -> u64 {
        let at = self.reserve(1024);
        self.write_type(at, self.type_type, name, tp_flags, basicsize, dictoffset);
        at
    }

    pub fn object(&mut self, tp: u64, size: u64) -> u64 {
        let at = self.reserve(size);
        self.write_u64(at + self.layout.object.ob_type, tp);
        at
    }

    /// A compact str; ASCII when possible, otherwise the narrowest kind.
    pub fn str(&mut self, text: &str) -> u64 {
        let s = self.layout.str;
        let chars: Vec<u32> = text.chars().map(|c| c as u32).collect();
        let max = chars.iter().copied().max().unwrap_or(0);
        let (kind, is_ascii) = match max {
            0..=0x7f => (1u32, true),
            0x80..=0xff => (1, false),
            0x100..=0xffff => (2, false),
            _ => (4, false),
        };
        let data_at = if is_ascii { s.ascii_data } else { s.compact_data };
        let at = self.object(self.str_type, data_at + (chars.len() as u64 + 1) * kind as u64);
        self.write_i64(at + s.length, chars.len() as i64);
        let state = (kind << s.kind_shift) | (1 << s.compact_bit) | ((is_ascii as u32) << s.ascii_bit);
        self.write(at + s.state, &state.to_le_bytes());
        let mut data = Vec::new();
        for c in chars {
            data.extend_from_slice(&c.to_le_bytes()[..kind as usize]);
        }
        self.write(at + data_at, &data);
        at
    }

    pub fn int(&mut self, value: i64) -> u64 {
        let l = self.layout.long;
        let mut digits = Vec::new();
        let mut v = value.unsigned_abs();
        while v > 0 {
            digits.push((v & ((1 << 30) - 1)) as u32);
            v >>= 30;
        }
        let at = self.object(self.int_type, l.digits + 4 * digits.len().max(1) as u64);
        let size = match l.encoding {
            LongEncoding::SignedSize => {
                if value < 0 {
                    -(digits.len() as i64)
                } else {
                    digits.len() as i64
                }
            }
            LongEncoding::Tagged => {
                let sign = if value == 0 {
                    1
                } else if value < 0 {
                    2
                } else {
                    0
                };
                ((digits.len() as i64) << 3) | sign
            }
        };
        self.write_i64(at + l.size_or_tag, size);
        for (i, d) in digits.iter().enumerate() {
            self.write(at + l.digits + 4 * i as u64, &d.to_le_bytes());
        }
        at
    }

    pub fn float(&mut self, value: f64) -> u64 {
        let at = self.object(self.float_type, 24);
        self.write(at + self.layout.containers.float_value, &value.to_le_bytes());
        at
    }

    pub fn list(&mut self, items: &[u64]) -> u64 {
        let at = self.object(self.list_type, 40);
        self.write_i64(at + self.layout.object.ob_size, items.len() as i64);
        let arr = self.reserve(8 * items.len().max(1) as u64);
        for (i, it) in items.iter().enumerate() {
            self.write_u64(arr + 8 * i as u64, *it);
        }
        self.write_u64(at + self.layout.containers.list_items, arr);
        at
    }

    pub fn tuple(&mut self, items: &[u64]) -> u64 {
        let items_at = self.layout.containers.tuple_items;
        let at = self.object(self.tuple_type, items_at + 8 * items.len() as u64);
        self.write_i64(at + self.layout.object.ob_size, items.len() as i64);
        for (i, it) in items.iter().enumerate() {
            self.write_u64(at + items_at + 8 * i as u64, *it);
        }
        at
    }

    pub fn deque(&mut self, len: i64) -> u64 {
        let at = self.object(self.deque_type, 216);
        self.write_i64(at + self.layout.object.ob_size, len);
        at
    }

    /// A keys table in this version's format holding `entries` (key, value); `values`
    /// true makes it a split table whose entries carry no values (returned separately).
    pub fn keys(&mut self, entries: &[(u64, u64)], split: bool) -> u64 {
        let n = entries.len() as u64;
        let mut log2 = 3u8;
        while (1u64 << log2) * 2 / 3 < n.max(1) {
            log2 += 1;
        }
        let size = 1u64 << log2;
        match self.layout.dict.keys_format {
            KeysFormat::Sized => {
                let width = if size <= 0xff { 1 } else { 2 };
                let at = self.reserve(40 + size * width + 24 * size);
                self.write_i64(at, 1);
                self.write_i64(at + 8, size as i64);
                self.write_i64(at + 24, (size * 2 / 3 - n) as i64);
                self.write_i64(at + 32, n as i64);
                let entries_at = at + 40 + size * width;
                for (i, (k, v)) in entries.iter().enumerate() {
                    let e = entries_at + 24 * i as u64;
                    self.write_u64(e + 8, *k);
                    if !split {
                        self.write_u64(e + 16, *v);
                    }
                }
                at
            }
            KeysFormat::Log2 => {
                let index_bytes = size; // one byte per slot
                let general = false;
                let esz = if general { 24 } else { 16 };
                let at = self.reserve(32 + index_bytes + esz * size);
                self.write_i64(at, 1);
                let kind = if split { 2u8 } else { 1u8 };
                self.write(at + 8, &[log2, log2, kind]);
                self.write_i64(at + 16, (size * 2 / 3 - n) as i64);
                self.write_i64(at + 24, n as i64);
                let entries_at = at + 32 + index_bytes;
                for (i, (k, v)) in entries.iter().enumerate() {
                    let e = entries_at + esz * i as u64;
                    self.write_u64(e, *k);
                    if !split {
                        self.write_u64(e + 8, *v);
                    }
                }
                at
            }
        }
    }

    /// A combined dict.
    pub fn dict(&mut self, entries: &[(u64, u64)]) -> u64 {
        let keys = self.keys(entries, false);
        let at = self.object(self.dict_type, 48);
        self.write_i64(at + self.layout.dict.ma_used, entries.len() as i64);
        self.write_u64(at + self.layout.dict.ma_keys, keys);
        at
    }

    /// A split dict sharing `keys`, with its own values array.
    pub fn split_dict(&mut self, keys: u64, values: &[u64]) -> u64 {
        let hdr = self.layout.dict.values_header;
        let arr = self.reserve(hdr + 8 * values.len() as u64);
        if hdr == 8 {
            self.write(arr, &[values.len() as u8, values.len() as u8, 0, 1]);
        }
        for (i, v) in values.iter().enumerate() {
            self.write_u64(arr + hdr + 8 * i as u64, *v);
        }
        let at = self.object(self.dict_type, 48);
        self.write_i64(at + self.layout.dict.ma_used, values.iter().filter(|v| **v != 0).count() as i64);
        self.write_u64(at + self.layout.dict.ma_keys, keys);
        self.write_u64(at + self.layout.dict.ma_values, arr);
        at
    }
}

fn minors() -> Vec<u8> {
    crate::python::layout::SUPPORTED.iter().map(|v| v.minor).collect()
}

#[test]
fn strings_of_every_kind_decode_on_every_layout() {
    for minor in minors() {
        let mut h = Heap::new(minor);
        let cases = ["", "_ready", "Ünïcødé", "αβγ → ∞", "emoji 🐍 snake"];
        let addrs: Vec<u64> = cases.iter().map(|c| h.str(c)).collect();
        let r = h.reader();
        for (text, addr) in cases.iter().zip(addrs) {
            let got = r.str(addr).unwrap_or_else(|e| panic!("3.{minor} {text:?}: {e}"));
            assert_eq!(got.text, *text, "3.{minor}");
            assert!(!got.truncated);
        }
    }
}

#[test]
fn long_strings_are_cut_and_say_so() {
    let mut h = Heap::new(12);
    let long = "x".repeat(limits::STR_CHARS + 10);
    let a = h.str(&long);
    let got = h.reader().str(a).unwrap();
    assert_eq!(got.text.len(), limits::STR_CHARS);
    assert!(got.truncated);
    assert_eq!(got.chars, limits::STR_CHARS + 10);
    let name = h.reader().name(a).unwrap();
    assert_eq!(name, format!("{}...[{} chars]", "x".repeat(limits::NAME_CHARS), limits::STR_CHARS + 10));
}

#[test]
fn ints_decode_with_sign_and_multiple_digits() {
    for minor in minors() {
        let mut h = Heap::new(minor);
        let values = [0i64, 1, -1, 7, 1 << 30, -(1 << 40) - 5, i64::MAX, i64::MIN + 1];
        let addrs: Vec<u64> = values.iter().map(|v| h.int(*v)).collect();
        let r = h.reader();
        for (v, a) in values.iter().zip(addrs) {
            assert_eq!(r.int(a).unwrap(), *v, "3.{minor}");
        }
    }
}

#[test]
fn floats_lists_tuples_and_deques() {
    for minor in minors() {
        let mut h = Heap::new(minor);
        let f = h.float(1234.5625);
        let a = h.int(1);
        let b = h.int(2);
        let list = h.list(&[a, b, f]);
        let tuple = h.tuple(&[b, a]);
        let dq = h.deque(7);
        let r = h.reader();
        assert_eq!(r.float(f).unwrap(), 1234.5625);
        assert_eq!(r.list_items(list, 10).unwrap(), (vec![a, b, f], 3));
        assert_eq!(r.list_items(list, 2).unwrap(), (vec![a, b], 3));
        assert_eq!(r.tuple_items(tuple, 10).unwrap(), (vec![b, a], 2));
        assert_eq!(r.deque_len(dq).unwrap(), 7);
        // Type confusion is an error, not a value.
        assert!(r.float(a).is_err());
        assert!(r.deque_len(list).is_err());
        assert!(r.list_len(tuple).is_err());
        assert!(r.int(f).is_err());
    }
}

/// A set's table as the interpreter leaves it: free slots (NULL key), tombstones (a dummy key
/// with hash -1) and live keys; `used` counts the live ones.
#[test]
fn set_keys_skip_tombstones_and_stop_at_used() {
    for minor in minors() {
        let mut h = Heap::new(minor);
        let set_type = h.new_type("set", 0, 200);
        let dummy_type = h.new_type("<dummy key> type", 0, 16);
        let dummy = h.object(dummy_type, 16);
        let (a, b) = (h.int(1), h.int(2));
        let c = h.layout.containers;
        let table = h.reserve(8 * 16);
        // slot 0: a tombstone (as after a discard), 1: a, 2: free, 3: b, 5: a stale key past
        // `used` that must not be read as live.
        let entries: [(u64, i64); 8] = [(dummy, -1), (a, 1), (0, 0), (b, 2), (0, 0), (a, 7), (0, 0), (0, 0)];
        for (i, (key, hash)) in entries.iter().enumerate() {
            h.write_u64(table + 16 * i as u64, *key);
            h.write_i64(table + 16 * i as u64 + 8, *hash);
        }
        let set = h.object(set_type, 200);
        h.write_i64(set + c.set_used, 2);
        h.write_i64(set + c.set_mask, 7);
        h.write_u64(set + c.set_table, table);
        let r = h.reader();
        assert_eq!(r.set_keys(set, 100).unwrap(), (vec![a, b], 2));
        assert_eq!(r.set_keys(set, 1).unwrap(), (vec![a], 2));
        // Not a set, or a set whose counts cannot be: an error.
        assert!(r.set_keys(a, 10).is_err());
        h.write_i64(set + c.set_used, 9);
        assert!(h.reader().set_keys(set, 10).is_err());
    }
}

#[test]
fn combined_and_split_dicts() {
    for minor in minors() {
        let mut h = Heap::new(minor);
        let k1 = h.str("_ready");
        let k2 = h.str("_scheduled");
        let k3 = h.str("_selector");
        let v1 = h.int(10);
        let v2 = h.int(20);
        let v3 = h.int(30);
        let d = h.dict(&[(k1, v1), (k2, v2), (k3, v3)]);
        let keys = h.keys(&[(k1, 0), (k2, 0), (k3, 0)], true);
        let s = h.split_dict(keys, &[v1, 0, v3]);
        let r = h.reader();
        assert_eq!(r.dict_len(d).unwrap(), 3);
        assert_eq!(r.dict_entries(d, 100).unwrap(), vec![(k1, v1), (k2, v2), (k3, v3)]);
        assert_eq!(r.dict_get_str(d, "_scheduled").unwrap(), Some(v2));
        assert_eq!(r.dict_get_str(d, "_missing").unwrap(), None);
        assert_eq!(r.dict_get_identity(d, k3).unwrap(), Some(v3));
        // Split: the unset middle value is skipped.
        assert_eq!(r.dict_entries(s, 100).unwrap(), vec![(k1, v1), (k3, v3)], "3.{minor}");
        assert_eq!(r.dict_get_str(s, "_scheduled").unwrap(), None);
        assert_eq!(r.dict_get_str(s, "_selector").unwrap(), Some(v3));
    }
}

#[test]
fn instance_attributes_through_each_versions_scheme() {
    for minor in minors() {
        let mut h = Heap::new(minor);
        let k_ready = h.str("_ready");
        let k_sched = h.str("_scheduled");
        let ready = h.deque(3);
        let sched = h.list(&[]);
        let attrs = [(k_ready, ready), (k_sched, sched)];
        let obj = match h.layout.attrs {
            AttrScheme::DictOffset => {
                let tp = h.new_type_with("Loop", flags::HEAPTYPE, 32, 16);
                let obj = h.object(tp, 32);
                let d = h.dict(&attrs);
                h.write_u64(obj + 16, d);
                obj
            }
            AttrScheme::PreHeader => {
                let tp = h.new_type_with("Loop", flags::HEAPTYPE | flags::MANAGED_DICT, 24, -48);
                let keys = h.keys(&[(k_ready, 0), (k_sched, 0)], true);
                h.write_u64(tp + h.layout.types.ht_cached_keys, keys);
                let block = h.reserve(64);
                let obj = block + 32;
                h.write_u64(obj + h.layout.object.ob_type, tp);
                let values = h.reserve(16);
                h.write_u64(values, ready);
                h.write_u64(values + 8, sched);
                h.write_u64(obj - 32, values);
                obj
            }
            AttrScheme::TaggedDictOrValues => {
                let tp = h.new_type_with("Loop", flags::HEAPTYPE | flags::MANAGED_DICT, 16, -1);
                let keys = h.keys(&[(k_ready, 0), (k_sched, 0)], true);
                h.write_u64(tp + h.layout.types.ht_cached_keys, keys);
                let block = h.reserve(64);
                let obj = block + 32;
                h.write_u64(obj + h.layout.object.ob_type, tp);
                let values = h.reserve(16);
                h.write_u64(values, ready);
                h.write_u64(values + 8, sched);
                h.write_u64(obj - 24, values - 1);
                obj
            }
            AttrScheme::InlineValues { .. } => {
                let tp = h.new_type_with("Loop", flags::HEAPTYPE | flags::MANAGED_DICT | flags::INLINE_VALUES, 16, -1);
                let keys = h.keys(&[(k_ready, 0), (k_sched, 0)], true);
                h.write_u64(tp + h.layout.types.ht_cached_keys, keys);
                let block = h.reserve(128);
                let obj = block + 32;
                h.write_u64(obj + h.layout.object.ob_type, tp);
                h.write(obj + 16, &[30, 2, 1, 1]);
                h.write_u64(obj + 16 + 8, ready);
                h.write_u64(obj + 16 + 16, sched);
                obj
            }
        };
        let r = h.reader();
        assert_eq!(r.getattr(obj, "_ready").unwrap(), Some(ready), "3.{minor}");
        assert_eq!(r.getattr(obj, "_scheduled").unwrap(), Some(sched), "3.{minor}");
        assert_eq!(r.getattr(obj, "_nothing").unwrap(), None, "3.{minor}");
        assert_eq!(r.deque_len(r.attr(obj, "_ready").unwrap()).unwrap(), 3);
    }
}

#[test]
fn inline_values_that_were_invalidated_fall_back_to_the_managed_dict() {
    for minor in minors().into_iter().filter(|m| *m >= 13) {
        let mut h = Heap::new(minor);
        let AttrScheme::InlineValues { managed_dict } = h.layout.attrs else { panic!() };
        let k = h.str("_ready");
        let v = h.deque(9);
        let tp = h.new_type_with("Loop", flags::MANAGED_DICT | flags::INLINE_VALUES, 16, -1);
        let block = h.reserve(128);
        let obj = block + 32;
        h.write_u64(obj + h.layout.object.ob_type, tp);
        h.write(obj + 16, &[30, 0, 1, 0]); // valid = 0
        let d = h.dict(&[(k, v)]);
        h.write_u64((obj as i64 + managed_dict) as u64, d);
        assert_eq!(h.reader().getattr(obj, "_ready").unwrap(), Some(v));
    }
}

#[test]
fn slots_are_found_through_member_descriptors_in_the_mro() {
    for minor in minors() {
        let mut h = Heap::new(minor);
        let member_type = h.new_type("member_descriptor", 0, 64);
        // PyMemberDef { name, type, offset, flags, doc }
        let def = h.reserve(40);
        h.write_i64(def + h.layout.member.def_offset, 80);
        let descr = h.object(member_type, 64);
        h.write_u64(descr + h.layout.member.descr_member, def);
        let k = h.str("_when");
        let base_dict = h.dict(&[(k, descr)]);
        let base = h.new_type("TimerHandle", flags::HEAPTYPE, 96);
        h.write_u64(base + h.layout.types.tp_dict, base_dict);
        let empty = h.dict(&[]);
        let sub = h.new_type("MyTimer", flags::HEAPTYPE, 96);
        h.write_u64(sub + h.layout.types.tp_dict, empty);
        let mro = h.tuple(&[sub, base]);
        h.write_u64(sub + h.layout.types.tp_mro, mro);
        let r = h.reader();
        assert_eq!(r.slot_offset(sub, "_when").unwrap(), Some(80));
        assert_eq!(r.slot_offset(sub, "_nope").unwrap(), None);
        assert!(r.is_subclass_by_name(sub, "TimerHandle").unwrap());
        assert!(!r.is_subclass_by_name(sub, "Handle").unwrap());
    }
}

#[test]
fn garbage_is_an_error_never_a_value() {
    let mut h = Heap::new(12);
    let s = h.str("hello");
    // Corrupt the str's type pointer to point at something that is not a type.
    let junk = h.reserve(64);
    let bad = h.object(junk, 64);
    // Length out of range.
    let long = h.str("abc");
    h.write_i64(long + h.layout.str.length, -5);
    // A list that claims 2^50 items.
    let l = h.list(&[]);
    h.write_i64(l + h.layout.object.ob_size, 1 << 50);
    let r = h.reader();
    assert!(r.str(bad).is_err());
    assert!(r.str(long).is_err());
    assert!(r.list_items(l, 10).is_err());
    assert!(r.str(0).is_err());
    assert!(r.str(s + 1).is_err());
    assert!(r.dict_entries(s, 10).is_err());
    assert!(r.getattr(0xdead_0000, "x").is_err());
}

#[test]
fn truncated_objects_fail_cleanly() {
    let mut h = Heap::new(13);
    let s = h.str("a long enough string");
    let d = h.dict(&[(s, s)]);
    // Remap a copy of the dict's keys table cut short.
    let keys = h.reader().ptr(d + h.layout.dict.ma_keys).unwrap();
    let mut cut = FakeMemory::new();
    let full = h.reader().bytes(keys, 40).unwrap();
    cut.map(keys, full);
    let r = ObjectReader::new(&cut, h.layout);
    assert!(r.dict_entries(d, 10).is_err());
    assert!(r.str(s).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Any bytes at all, read as any kind of object on any layout: an error or a value, never
    /// a panic, a hang or a giant allocation.
    #[test]
    fn random_memory_never_panics(
        row in 0..crate::python::layout::SUPPORTED.len(),
        blob in proptest::collection::vec(any::<u8>(), 0..4096),
        offset in 0u64..4096,
        seeds in proptest::collection::vec(any::<u64>(), 0..8),
    ) {
        let layout = for_version(crate::python::layout::SUPPORTED[row]).unwrap();
        let mut mem = FakeMemory::new();
        let base = 0x7f00_0000_0000u64;
        mem.map(base, blob.clone());
        // Also map the blob at addresses the blob itself points to, so pointer chasing
        // goes somewhere.
        for chunk in blob.chunks_exact(8).take(8) {
            let p = u64::from_le_bytes(chunk.try_into().unwrap());
            if crate::python::reader::plausible_pointer(p) {
                mem.map(p, blob.clone());
            }
        }
        for s in &seeds {
            if crate::python::reader::plausible_pointer(*s) {
                mem.map(*s, blob.clone());
            }
        }
        let r = ObjectReader::new(&mem, layout);
        let obj = base + offset;
        let _ = r.str(obj);
        let _ = r.int(obj);
        let _ = r.float(obj);
        let _ = r.list_items(obj, 100);
        let _ = r.tuple_items(obj, 100);
        let _ = r.deque_len(obj);
        let _ = r.set_keys(obj, 100);
        let _ = r.dict_entries(obj, 100);
        let _ = r.dict_get_str(obj, "_ready");
        let _ = r.getattr(obj, "_ready");
        let _ = r.slot_offset(obj, "_when");
        let _ = r.weakref_target(obj);
        let _ = r.type_name(obj);
        let _ = r.mro(obj);
        let _ = r.c_string(obj, 64);
    }
}

/// An empty dict points at the interpreter's shared empty keys table (`Py_EMPTY_KEYS`: size 1
/// up to 3.10, log2 size 0 from 3.11): an empty dict, not a corrupt one.
#[test]
fn empty_dicts_share_the_empty_keys_table() {
    for minor in [8u8, 10, 11, 12, 13, 14, 15] {
        let mut h = Heap::new(minor);
        let keys = h.reserve(64);
        h.write_i64(keys, 1);
        match h.layout.dict.keys_format {
            KeysFormat::Sized => h.write_i64(keys + 8, 1),
            KeysFormat::Log2 => h.write(keys + 8, &[0, 0, 1]),
        }
        let dict = h.object(h.dict_type, 48);
        h.write_u64(dict + h.layout.dict.ma_keys, keys);
        let key = h.str("__asyncio_running_event_loop__");
        let r = h.reader();
        assert_eq!(r.dict_len(dict).unwrap(), 0, "3.{minor}");
        assert_eq!(r.dict_get_str(dict, "x").unwrap(), None, "3.{minor}");
        assert_eq!(r.dict_get_identity(dict, key).unwrap(), None, "3.{minor}");
        assert_eq!(r.dict_entries(dict, 10).unwrap(), vec![], "3.{minor}");
        assert_eq!(r.watch_dict_key(dict, "x").unwrap(), None, "3.{minor}");
    }
}
