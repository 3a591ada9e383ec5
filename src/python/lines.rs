//! Line numbers from a code object's line table, in each of CPython's three formats.
//!
//! Pure functions over bytes already read from the target; a malformed table yields the
//! best line found so far or `None`, never a panic or an endless loop (line numbers from the
//! target saturate rather than overflow).

use crate::python::layout::LineTableFormat;

/// The source line of the instruction at byte `offset` of a code object's bytecode. A
/// negative offset (a frame that has not run its first instruction yet) gives the line of the
/// table's first entry, as CPython and py-spy do.
pub fn line_at(format: LineTableFormat, table: &[u8], first_line: i32, offset: i64) -> Option<i32> {
    match format {
        LineTableFormat::Lnotab => Some(lnotab(table, first_line, offset)),
        LineTableFormat::Linetable310 => Some(linetable_310(table, first_line, offset)),
        LineTableFormat::Locations311 => locations_311(table, first_line, offset),
    }
}

/// 3.8–3.9 `co_lnotab`: pairs of (bytecode delta, signed line delta).
fn lnotab(table: &[u8], first_line: i32, offset: i64) -> i32 {
    let mut line = first_line;
    let mut addr: i64 = 0;
    for pair in table.chunks_exact(2) {
        addr += pair[0] as i64;
        if addr > offset {
            break;
        }
        line = line.saturating_add(pair[1] as i8 as i32);
    }
    line
}

/// 3.10 `co_linetable`: pairs of (bytecode delta, signed line delta), −128 = no line.
fn linetable_310(table: &[u8], first_line: i32, offset: i64) -> i32 {
    let mut line = first_line;
    let mut addr: i64 = 0;
    for pair in table.chunks_exact(2) {
        let line_delta = pair[1] as i8;
        if line_delta != -128 {
            line = line.saturating_add(line_delta as i32);
        }
        addr += pair[0] as i64;
        if addr > offset {
            break;
        }
    }
    line
}

fn varint(table: &[u8], i: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    let mut shift = 0;
    loop {
        let b = *table.get(*i)?;
        *i += 1;
        value |= ((b & 63) as u32) << shift;
        if b & 64 == 0 {
            return Some(value);
        }
        shift += 6;
        if shift > 30 {
            return None;
        }
    }
}

fn signed_varint(table: &[u8], i: &mut usize) -> Option<i32> {
    let v = varint(table, i)?;
    Some(if v & 1 == 1 { -((v >> 1) as i32) } else { (v >> 1) as i32 })
}

/// 3.11+ location table: entries of (code, length in code units) with varint payloads.
fn locations_311(table: &[u8], first_line: i32, offset: i64) -> Option<i32> {
    let mut line = first_line;
    let mut addr: i64 = 0;
    let mut i = 0;
    while i < table.len() {
        let head = table[i];
        i += 1;
        if head & 0x80 == 0 {
            // Every entry starts with the high bit set; anything else is a torn table.
            return None;
        }
        let code = (head >> 3) & 15;
        let units = (head & 7) as i64 + 1;
        let delta = match code {
            15 => None, // no location
            14 => {
                let d = signed_varint(table, &mut i)?;
                varint(table, &mut i)?; // end line delta
                varint(table, &mut i)?; // start column
                varint(table, &mut i)?; // end column
                Some(d)
            }
            13 => Some(signed_varint(table, &mut i)?), // line only
            10..=12 => {
                i += 2; // start and end column bytes
                Some((code - 10) as i32)
            }
            _ => {
                i += 1; // column byte
                Some(0)
            }
        };
        if let Some(d) = delta {
            line = line.saturating_add(d);
        }
        addr += units * 2;
        if addr > offset {
            return Some(line);
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_pairs() {
        // def f():        line 10
        //     a = 1       line 11, bytes 0..4
        //     b = 2       line 12, bytes 4..8
        let table = [0, 1, 4, 1];
        assert_eq!(line_at(LineTableFormat::Lnotab, &table, 10, 0), Some(11));
        assert_eq!(line_at(LineTableFormat::Lnotab, &table, 10, 6), Some(12));
        // Negative deltas (a loop jumping back).
        let table = [0, 3, 10, 0xfe];
        assert_eq!(line_at(LineTableFormat::Lnotab, &table, 1, 12), Some(2));
    }

    #[test]
    fn linetable_310_pairs_with_missing_lines() {
        let table = [2, 1, 4, 0x80, 4, 2];
        assert_eq!(line_at(LineTableFormat::Linetable310, &table, 5, 0), Some(6));
        assert_eq!(line_at(LineTableFormat::Linetable310, &table, 5, 3), Some(6));
        assert_eq!(line_at(LineTableFormat::Linetable310, &table, 5, 7), Some(8));
    }

    #[test]
    fn locations_311_entries() {
        // (code 13: line only, +1, 1 unit), (code 11: one-line form +1, 2 units, 2 col bytes),
        // (code 14: long form, -1, 3 units).
        let table = [0x80 | (13 << 3), 2, 0x80 | (11 << 3) | 1, 4, 9, 0x80 | (14 << 3) | 2, 3, 0, 0, 0];
        assert_eq!(line_at(LineTableFormat::Locations311, &table, 20, 0), Some(21));
        assert_eq!(line_at(LineTableFormat::Locations311, &table, 20, 2), Some(22));
        assert_eq!(line_at(LineTableFormat::Locations311, &table, 20, 4), Some(22));
        assert_eq!(line_at(LineTableFormat::Locations311, &table, 20, 6), Some(21));
        // A byte without the entry bit is rejected.
        assert_eq!(line_at(LineTableFormat::Locations311, &[0x01, 0x02], 1, 0), None);
        // Not started yet: the first entry's line.
        assert_eq!(line_at(LineTableFormat::Locations311, &table, 20, -2), Some(21));
        assert_eq!(line_at(LineTableFormat::Lnotab, &[0, 1, 4, 1], 10, -1), Some(10));
    }

    #[test]
    fn garbage_tables_never_panic() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..5000 {
            let len = (seed % 64) as usize;
            let table: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            for f in [LineTableFormat::Lnotab, LineTableFormat::Linetable310, LineTableFormat::Locations311] {
                let _ = line_at(f, &table, 1, (seed % 200) as i64);
            }
        }
    }

    proptest::proptest! {
        /// Any bytes as any format, with any first line and offset: a line or `None`, no
        /// overflow, no out-of-bounds index.
        #[test]
        fn any_table_gives_a_line_or_none(
            table in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            first_line in proptest::prop_oneof![proptest::prelude::any::<i32>(), i32::MAX - 300..=i32::MAX, i32::MIN..i32::MIN + 300],
            offset: i64,
            format in 0u8..3,
        ) {
            let format = [LineTableFormat::Lnotab, LineTableFormat::Linetable310, LineTableFormat::Locations311][format as usize];
            let _ = line_at(format, &table, first_line, offset);
        }
    }

    #[test]
    fn line_numbers_near_the_limits_saturate() {
        // A 3.11 "line only" entry (code 13) adding 1000 lines to a first line near i32::MAX.
        let table = [0x80 | (13 << 3), 0xd0, 0x0f];
        assert_eq!(line_at(LineTableFormat::Locations311, &table, i32::MAX - 5, 0), Some(i32::MAX));
        let table = [2, 100];
        assert_eq!(line_at(LineTableFormat::Lnotab, &table, i32::MAX - 5, 4), Some(i32::MAX));
    }
}
