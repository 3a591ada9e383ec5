//! Strings read from a target, made safe for where they go. Anything in a target's memory can
//! be shaped by whoever talks to it (a task name from a request header, a function name from a
//! template, argv), so a string from the target reaches no output without passing here:
//!
//! - [`terminal`]: control characters (C0, DEL, C1) and the invisible characters that reorder
//!   text (bidi controls) are shown as visible escapes (`\x1b`, `\n`, `\u{202e}`), never
//!   emitted; a backslash is doubled so an escape cannot be forged.
//! - [`xml`]: the same, plus the two non-characters XML forbids (`U+FFFE`, `U+FFFF`): what
//!   is left is text XML allows (markup characters are escaped by the SVG writer).
//! - [`collapsed`]: the same, plus `;` (the collapsed format's frame separator).
//! - [`html`]: [`xml`], then the markup characters (`& < > " '`) as entities: safe in HTML
//!   and XML text and in quoted attribute values.
//!
//! JSON needs nothing: serde escapes every control character.

use std::borrow::Cow;

/// Characters that change how the rest of a line displays without being seen.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escaped(s: &str, also: impl Fn(char) -> bool) -> Cow<'_, str> {
    let needs = |c: char| c == '\\' || c.is_control() || invisible(c) || also(c);
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && (c.is_control() || also(c)) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Text for a terminal (or any line-oriented text output): see the module documentation.
pub fn terminal(s: &str) -> Cow<'_, str> {
    escaped(s, |_| false)
}

/// Text for XML (SVG): characters XML 1.0 allows, control characters escaped visibly.
pub fn xml(s: &str) -> Cow<'_, str> {
    escaped(s, |c| matches!(c, '\u{fffe}' | '\u{ffff}'))
}

/// Text for HTML (and XML) text or a quoted attribute value: [`xml`], then `&`, `<`, `>`, `"`
/// and `'` as entities.
pub fn html(s: &str) -> Cow<'_, str> {
    let base = xml(s);
    if !base.contains(['&', '<', '>', '"', '\'']) {
        return base;
    }
    let mut out = String::with_capacity(base.len() + 16);
    for c in base.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A frame name for the collapsed format: no line break, no `;`.
pub fn collapsed(s: &str) -> Cow<'_, str> {
    escaped(s, |c| c == ';' || c == '\u{fffe}' || c == '\u{ffff}')
}

/// Does `c` belong in XML 1.0 text (`Char` production)?
pub fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_are_shown_not_obeyed() {
        let name = "\x1b]0;pwned\x07\x1b[2J";
        assert_eq!(terminal(name), "\\x1b]0;pwned\\x07\\x1b[2J");
        assert_eq!(terminal("PID 1\nPID 1: forged line"), "PID 1\\nPID 1: forged line");
        assert_eq!(terminal("a\\x1b"), "a\\\\x1b", "an escape cannot be forged");
        assert_eq!(terminal("abc\u{202e}cba"), "abc\\u{202e}cba");
        assert_eq!(terminal("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(terminal("plain Ünïcødé 🐍"), "plain Ünïcødé 🐍");
        assert!(matches!(terminal("plain"), Cow::Borrowed(_)));
        assert_eq!(collapsed("a;b\nc"), "a\\x3bb\\nc");
        assert_eq!(xml("x\u{fffe}\u{0}"), "x\\u{fffe}\\x00");
        assert_eq!(html("<script>\"a\" & 'b'</script>\n"), "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;\\n");
        assert!(matches!(html("plain Ünïcødé"), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn terminal_text_has_no_control_characters(s in any::<String>()) {
            let t = terminal(&s);
            prop_assert!(!t.chars().any(|c| c.is_control() || invisible(c)), "{t:?}");
        }

        #[test]
        fn xml_text_is_allowed_in_xml(s in any::<String>()) {
            let t = xml(&s);
            prop_assert!(t.chars().all(|c| xml_char(c) && !c.is_control()), "{t:?}");
        }

        #[test]
        fn html_text_has_no_markup(s in any::<String>()) {
            let t = html(&s);
            prop_assert!(!t.contains(['<', '>', '"', '\'']) && t.chars().all(|c| xml_char(c) && !c.is_control()), "{t:?}");
            // Every & starts an entity.
            for (i, _) in t.match_indices('&') {
                let rest = &t[i..];
                prop_assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| rest.starts_with(e)), "{t:?}");
            }
        }

        #[test]
        fn collapsed_names_have_no_separators(s in any::<String>()) {
            let t = collapsed(&s);
            prop_assert!(!t.contains(';') && !t.contains('\n') && !t.chars().any(|c| c.is_control()), "{t:?}");
        }

        #[test]
        fn escaping_is_reversible(s in any::<String>()) {
            // Distinct names stay distinct: the escape is injective.
            prop_assert_eq!(unescape(&terminal(&s)), s);
        }
    }

    /// The inverse of [`terminal`] (test only: proves that no two names escape alike).
    fn unescape(t: &str) -> String {
        let mut out = String::new();
        let mut it = t.chars().peekable();
        while let Some(c) = it.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('x') => {
                    let h: String = it.by_ref().take(2).collect();
                    out.push(char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap());
                }
                Some('u') => {
                    it.next(); // {
                    let h: String = it.by_ref().take_while(|c| *c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap());
                }
                other => panic!("bad escape {other:?} in {t:?}"),
            }
        }
        out
    }
}
