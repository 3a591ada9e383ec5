//! Strings read from a target made safe for where they go. Anything in a target's memory can
//! be shaped by whoever talks to it (a task name from a request header, a function name from
//! a template), so a string from the target is never written anywhere without passing here.
//!
//! - [`terminal`]: control characters (C0, DEL, C1) and escape sequences are shown visibly
//!   (`\x1b`, `\n`), never emitted.

use std::borrow::Cow;

/// Text for a terminal: every control character shown as a visible escape (`\x1b`, `\n`,
/// `\t`, `\u{9b}`), a backslash doubled so the escapes cannot be forged.
pub fn terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}
