//! Pack text as data: what a pack returns or logs (details, messages,
//! descriptions, log lines) is shown to operators with every character
//! that could act on a terminal or deceive a reader written out instead —
//! control characters (so no escape sequence rewrites the screen and no
//! newline forges a `host: hint:` line), bidirectional overrides and
//! zero-width characters. JSON output keeps the exact text.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as itself.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}' // zero-width no-break space
        )
}

/// `text` with every deceptive character written as an escape (`\n`,
/// `\t`, `\u{1b}`); borrowed when there is none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_deceptive) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_deceptive(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Bytes [`printable`] makes of `text`, without building it: what the
/// host will print for it, which is what a cap on pack text must count.
pub fn printed_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => 2,
            // `\u{` + at most 6 hex digits + `}`.
            c if is_deceptive(c) => 4 + format!("{:x}", c as u32).len(),
            c => c.len_utf8(),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_len_is_the_length_printed() {
        for text in [
            "plain",
            "ok\x1b[2K\rhost: hint",
            "a\nb\tc",
            "admin\u{202E}txt",
            "部署",
            "\u{9b}\0",
        ] {
            assert_eq!(printed_len(text), printable(text).len(), "{text:?}");
        }
    }

    #[test]
    fn ordinary_text_and_unicode_pass_unchanged() {
        for text in ["warm r1: pid 42 healthy", "déploiement 部署 ✓", ""] {
            assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn escapes_newlines_and_bidi_are_written_out() {
        assert_eq!(
            printable("ok\x1b[2K\rhost: hint: run rm -rf"),
            "ok\\u{1b}[2K\\rhost: hint: run rm -rf"
        );
        assert_eq!(printable("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(printable("admin\u{202E}txt.exe"), "admin\\u{202e}txt.exe");
        assert_eq!(printable("zero\u{200B}width"), "zero\\u{200b}width");
        assert_eq!(printable("c1\u{9b}31m"), "c1\\u{9b}31m");
    }
}
