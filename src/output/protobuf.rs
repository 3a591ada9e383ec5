//! A minimal protocol-buffers writer (the wire format only: varints, fixed 64-bit values and
//! length-delimited fields), enough to write Perfetto traces without generated code or protoc
//! at build time. Field numbers and types are the caller's business (`output::perfetto`
//! names each one after the schema).

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// Append `v` as a base-128 varint (at most 10 bytes).
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// One message being written: its fields, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    buf: Vec<u8>,
}

impl Message {
    pub fn new() -> Self {
        Message::default()
    }

    fn tag(&mut self, field: u32, wire: u32) {
        put_varint(&mut self.buf, (u64::from(field) << 3) | u64::from(wire));
    }

    /// `uint32`, `uint64` and enum fields.
    pub fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.tag(field, VARINT);
        put_varint(&mut self.buf, v);
        self
    }

    /// `int32` and `int64` fields: a negative value is sign-extended to 64 bits (10 bytes), as
    /// the format asks of both.
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.uint(field, v as u64)
    }

    pub fn bool(&mut self, field: u32, v: bool) -> &mut Self {
        self.uint(field, v as u64)
    }

    /// `double` fields.
    pub fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.tag(field, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// `bytes` fields.
    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.tag(field, LEN);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// `string` fields (a Rust string is valid UTF-8, as the format requires).
    pub fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    /// A nested message.
    pub fn message(&mut self, field: u32, m: &Message) -> &mut Self {
        self.bytes(field, &m.buf)
    }

    /// A nested message built by `f`.
    pub fn with(&mut self, field: u32, f: impl FnOnce(&mut Message)) -> &mut Self {
        let mut m = Message::new();
        f(&mut m);
        self.message(field, &m)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        b
    }

    /// Decode a varint (the test's own reader): value and bytes used.
    fn read_varint(b: &[u8]) -> (u64, usize) {
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate() {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return (v, i + 1);
            }
        }
        panic!("unterminated varint {b:?}");
    }

    #[test]
    fn varints_at_their_edges() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(1), [1]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(16_383), [0xff, 0x7f]);
        assert_eq!(varint(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(varint(u32::MAX as u64), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(varint(u64::MAX), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        for v in [0, 1, 127, 128, 255, 256, 1 << 14, (1 << 21) - 1, 1 << 35, 1 << 56, (1 << 63) - 1, 1 << 63, u64::MAX] {
            let b = varint(v);
            assert_eq!(read_varint(&b), (v, b.len()), "{v}");
            assert!(b.len() <= 10);
        }
    }

    #[test]
    fn fields_are_tagged_with_number_and_wire_type() {
        let mut m = Message::new();
        m.uint(1, 150);
        assert_eq!(m.as_bytes(), [0x08, 0x96, 0x01]);
        // Negative int32/int64: ten bytes, two's complement.
        let mut m = Message::new();
        m.int(2, -1);
        assert_eq!(m.as_bytes(), [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        let mut m = Message::new();
        m.string(2, "testing");
        assert_eq!(m.as_bytes(), b"\x12\x07testing");
        let mut m = Message::new();
        m.double(5, 1.5);
        assert_eq!(m.as_bytes()[0], (5 << 3) | 1);
        assert_eq!(&m.as_bytes()[1..], 1.5f64.to_le_bytes());
        // Field numbers past 15 take a two-byte tag (TracePacket's are up to 135).
        let mut m = Message::new();
        m.bool(87, true);
        assert_eq!(m.as_bytes(), [0xb8, 0x05, 0x01]);
        let mut outer = Message::new();
        outer.with(3, |inner| {
            inner.uint(1, 150);
        });
        assert_eq!(outer.as_bytes(), [0x1a, 0x03, 0x08, 0x96, 0x01]);
        // An empty nested message is a field of length 0.
        let mut outer = Message::new();
        outer.with(4, |_| {});
        assert_eq!(outer.into_bytes(), [0x22, 0x00]);
    }
}
