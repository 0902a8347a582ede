//! What the extension shows of input it does not trust (a query context, a
//! registry or item name from the socket) in its log and its error replies:
//! at most [`MAX_SHOWN`] bytes, escaped, with the full length when cut. A
//! newline in the input is shown as `\n`, so it cannot start a log line.

use std::fmt;

/// Bytes of untrusted input shown at most.
pub const MAX_SHOWN: usize = 256;

/// `s` quoted and escaped as Rust's `{:?}` does, cut to [`MAX_SHOWN`]
/// bytes (on a character boundary) with `... (N bytes)` when longer.
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a>(pub &'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut end = s.len().min(MAX_SHOWN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "\"{}\"", s[..end].escape_debug())?;
        if end < s.len() {
            write!(f, "... ({} bytes)", s.len())?;
        }
        Ok(())
    }
}

/// [`Excerpt`] as an owned string (for error values that outlive the input).
pub fn excerpt(s: &str) -> String {
    Excerpt(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_and_escaped_whole() {
        assert_eq!(excerpt("web"), r#""web""#);
        assert_eq!(
            excerpt("x\n2026-12-02T13:00:00Z  WARN forged"),
            r#""x\n2026-12-02T13:00:00Z  WARN forged""#
        );
        assert_eq!(excerpt("a\r\u{1b}[31m\""), r#""a\r\u{1b}[31m\"""#);
    }

    #[test]
    fn long_input_is_cut_with_its_length() {
        let big = "é".repeat(3_000_000); // 6 MB, two bytes a character
        let shown = excerpt(&big);
        assert!(shown.len() < MAX_SHOWN + 40, "{}", shown.len());
        assert!(shown.ends_with("... (6000000 bytes)"), "{shown}");
        assert!(!shown.contains('\n'));
    }
}
