//! Printing what a jail controls (its processes' command lines, its
//! hostname, its files' names, its error messages) as data: control
//! characters escaped, so that no jail can move the operator's cursor, set
//! the terminal's title, erase lines or answer-back through it.

use std::borrow::Cow;

/// `s` with every control character (C0 but tab, DEL, C1) and the
/// backslash escaped: `\n`, `\t`... stay readable, `\e` is `\x1b`, a C1
/// control is `\u{9b}`. Text without any is returned as it is.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

/// Like [`escape`], keeping newlines (for multi-line text printed as it is,
/// such as an error's tail of another program's output).
pub fn escape_keep_newlines(s: &str) -> Cow<'_, str> {
    escape_with(s, true)
}

fn needs(c: char, keep_nl: bool) -> bool {
    (c.is_control() && c != '\t' && !(keep_nl && c == '\n')) || c == '\\'
}

fn escape_with(s: &str, keep_nl: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs(c, keep_nl)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs(c, keep_nl) {
            out.push(c);
            continue;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// Bytes a jail produced (a `/proc/PID/cmdline` argument, a file name)
/// as text: invalid UTF-8 replaced, then escaped.
pub fn escape_bytes(b: &[u8]) -> String {
    escape(&String::from_utf8_lossy(b)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("sleep 1000 -- ok é"), Cow::Borrowed(_)));
        assert!(matches!(escape("a\tb"), Cow::Borrowed(_)));
    }

    #[test]
    fn terminal_sequences_are_escaped() {
        // Set the window title, erase the line, C1 CSI, DEL, a backslash.
        let s = "\x1b]0;pwned\x07\r\x1b[2K\u{9b}31m\x7f\\";
        let e = escape(s);
        assert_eq!(e, "\\x1b]0;pwned\\x07\\r\\x1b[2K\\u{9b}31m\\x7f\\\\");
        assert!(!e.chars().any(|c| c.is_control()));
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape_keep_newlines("a\nb\x1b"), "a\nb\\x1b");
        assert_eq!(escape_bytes(b"x\xff\x1b"), "x\u{fffd}\\x1b");
    }
}
