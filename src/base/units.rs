//! Durations as people read them, the same in every output.

/// `4.2 ms`, `412 ms`, `1.84 s`: three significant figures or so, whatever the size.
pub fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::ms_text;

    #[test]
    fn each_range_keeps_its_precision() {
        assert_eq!(ms_text(4.25), "4.2 ms");
        assert_eq!(ms_text(9.96), "10.0 ms");
        assert_eq!(ms_text(10.0), "10 ms");
        assert_eq!(ms_text(412.4), "412 ms");
        assert_eq!(ms_text(999.4), "999 ms");
        assert_eq!(ms_text(1840.0), "1.84 s");
    }
}
