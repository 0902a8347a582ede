//! Text a jail controls, made safe to show on a terminal.
//!
//! A jail chooses its exec errors, its process names, its console output: a
//! line jailer prints around such text must not let it move the cursor,
//! recolour the screen, retitle the terminal or fake a line of jailer's own.
//! [`escape`] is for text inside one framing line; [`escape_text`] for
//! multi-line text where line breaks and tabs are meaningful.
//!
//! Escaped: the C0 controls (`\n`, `\t`, `\r` by name, the rest as `\xNN`),
//! DEL (`\x7f`), the C1 controls U+0080..U+009F (`\u{80}`; a terminal reads
//! U+009B as CSI) and the bidirectional formatting characters U+202A..U+202E,
//! U+2066..U+2069 (which reorder what follows them on screen). A backslash is
//! left as it is: an escape never hides or forges anything, it only reads like
//! one.

use std::borrow::Cow;
use std::fmt::Write;

/// `s` for one line of jailer's own output: every control character
/// escaped, line breaks and tabs too. Borrowed when nothing needed escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

/// `s` as multi-line text: like [`escape`], but `\n` and `\t` pass through.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape_with(s, true)
}

fn needs_escape(c: char, keep_lines: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_lines,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

fn escape_with(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let Some(first) = s.find(|c| needs_escape(c, keep_lines)) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if !needs_escape(c, keep_lines) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        for s in [
            "",
            "exec /bin/nope: No such file",
            "naïve — ünïcode ✓",
            "a\\x1b",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
            assert!(matches!(escape_text(s), Cow::Borrowed(_)), "{s}");
        }
        assert!(matches!(
            escape_text("two\nlines\tand a tab"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn c0_controls_and_del() {
        assert_eq!(escape("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(
            escape("\u{1b}[2J\u{1b}]0;pwned\u{7}"),
            "\\x1b[2J\\x1b]0;pwned\\x07"
        );
        assert_eq!(escape("\0\u{8}\u{7f}"), "\\x00\\x08\\x7f");
        assert_eq!(escape_text("a\nb\tc\rd\u{1b}"), "a\nb\tc\\rd\\x1b");
    }

    #[test]
    fn c1_controls_and_bidi() {
        // U+009B is CSI on terminals that take 8-bit controls.
        assert_eq!(escape("x\u{9b}31mred"), "x\\u{9b}31mred");
        assert_eq!(escape("\u{80}\u{9f}\u{a0}"), "\\u{80}\\u{9f}\u{a0}");
        assert_eq!(escape("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
        assert_eq!(escape_text("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn every_control_is_escaped_and_nothing_else() {
        for cp in 0u32..0x3000 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let s = c.to_string();
            let e = escape(&s);
            let control = c.is_control() || matches!(cp, 0x202a..=0x202e | 0x2066..=0x2069);
            assert_eq!(e != s, control, "U+{cp:04X} -> {e:?}");
            assert!(!e.chars().any(|c| c.is_control()), "U+{cp:04X} -> {e:?}");
        }
    }
}
