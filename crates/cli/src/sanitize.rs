//! Makes text from the network safe to print on a terminal.
//!
//! Everything a supernode or a peer chose — usernames, display names, greetings, messages,
//! device names, URLs from the supernode list, error texts — goes through here before a human
//! sees it. Raw, an ESC would let anyone who knows a username clear the screen, set the window
//! title or plant a hyperlink (CSI, OSC 0, OSC 8); a CR or a line break would let them forge a
//! line such as "IDENTITY CHANGED"; a bidi override would make text read backwards; an invisible
//! character would make two names look the same. The supernode refuses most of these, but a
//! malicious supernode would not, so the client escapes them regardless: they show as visible
//! `\x1b`, `\r`, `\u{202e}`. `--json` output needs none of this: serde escapes control
//! characters in JSON strings.

use std::borrow::Cow;
use std::fmt;

use peerline_client::wire::validate::{is_bidi_control, is_invisible};

/// What a continuation line of a multi-line text starts with, so that no line of someone
/// else's text begins where the CLI's own lines begin.
pub const CONTINUATION: &str = "    ";

/// Whether `c` is a format character (Unicode general category Cf, Unicode 15.1) or a line or
/// paragraph separator: these take no space, steer the layout of other characters, or hide text
/// (the tag characters U+E0020-E007F can carry a whole invisible sentence).
fn is_format_or_separator(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061c}'
            | '\u{06dd}'
            | '\u{070f}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// Whether `c` must not reach the terminal as it is: control characters (C0, DEL, C1), bidi
/// controls and marks, zero-width and other invisible characters.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || is_invisible(c) || is_format_or_separator(c)
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write;
    let _ = match c {
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        c if u32::from(c) < 0x100 => write!(out, "\\x{:02x}", u32::from(c)),
        c => write!(out, "\\u{{{:x}}}", u32::from(c)),
    };
}

/// `text` with every character that needs it escaped; a `multiline` text keeps its line breaks
/// (each followed by [`CONTINUATION`]) and tabs.
fn escape_with(text: &str, multiline: bool) -> Cow<'_, str> {
    let keep = |c: char| multiline && matches!(c, '\n' | '\t');
    if !text.chars().any(|c| (needs_escape(c) && !keep(c)) || (multiline && c == '\n')) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' if multiline => {
                out.push('\n');
                out.push_str(CONTINUATION);
            }
            c if keep(c) => out.push(c),
            c if needs_escape(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A one-line text from the network (a name, a greeting, a URL): every character that could
/// act on the terminal, reorder or hide text is shown escaped, line breaks included.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

/// A text that may span lines (a message, an error): like [`escape_line`], but line breaks and
/// tabs stay, and each line after the first starts with [`CONTINUATION`], so that a line in the
/// text never looks like a line of the CLI's own.
pub fn escape_text(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

/// Displays a one-line text escaped with [`escape_line`]; width and alignment (`{:<20}`) apply
/// to the escaped form.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape_line(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_untouched_and_not_copied() {
        for text in ["alice", "Zoë Müller", "אליס", "علي", "日本語", "👍🏽 ❤️", "C:\\path", "a b"]
        {
            assert!(matches!(escape_line(text), Cow::Borrowed(t) if t == text), "{text:?}");
        }
        assert!(matches!(escape_text("two\n\tlines"), Cow::Owned(_)));
    }

    #[test]
    fn terminal_escape_sequences_become_visible() {
        assert_eq!(escape_line("\u{1b}[2J\u{1b}[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(escape_line("\u{1b}]0;pwned\u{7}"), "\\x1b]0;pwned\\x07");
        assert_eq!(
            escape_line("\u{1b}]8;;https://evil.example\u{1b}\\click\u{1b}]8;;\u{1b}\\"),
            "\\x1b]8;;https://evil.example\\x1b\\click\\x1b]8;;\\x1b\\"
        );
        assert_eq!(escape_line("\u{9b}31m\u{7f}\u{0}"), "\\x9b31m\\x7f\\x00");
        assert_eq!(escape_line("ok\rIDENTITY CHANGED"), "ok\\rIDENTITY CHANGED");
        assert_eq!(escape_line("a\nb\tc"), "a\\nb\\tc");
    }

    #[test]
    fn bidi_controls_and_invisible_characters_become_visible() {
        assert_eq!(escape_line("bob\u{202e}gnp.exe"), "bob\\u{202e}gnp.exe");
        assert_eq!(escape_line("\u{2067}x\u{2069}"), "\\u{2067}x\\u{2069}");
        assert_eq!(escape_line("\u{200f}\u{200e}\u{61c}"), "\\u{200f}\\u{200e}\\u{61c}");
        assert_eq!(escape_line("b\u{200b}ob\u{feff}"), "b\\u{200b}ob\\u{feff}");
        assert_eq!(escape_line("a\u{200d}b\u{2028}c"), "a\\u{200d}b\\u{2028}c");
        assert_eq!(escape_line("soft\u{ad}hyphen"), "soft\\xadhyphen");
        assert_eq!(escape_line("hi\u{e0041}\u{e0042}"), "hi\\u{e0041}\\u{e0042}");
    }

    #[test]
    fn multi_line_texts_keep_their_lines_indented() {
        assert_eq!(escape_text("one\ntwo\tcols"), format!("one\n{CONTINUATION}two\tcols"));
        assert_eq!(
            escape_text("hi\nIDENTITY CHANGED: fake\r\u{1b}[1A"),
            format!("hi\n{CONTINUATION}IDENTITY CHANGED: fake\\r\\x1b[1A")
        );
    }

    #[test]
    fn every_escaped_output_is_printable() {
        let nasty: String =
            (0u32..0x110000).filter_map(char::from_u32).filter(|c| needs_escape(*c)).collect();
        for out in [escape_line(&nasty), escape_text(&nasty)] {
            assert!(out.chars().all(|c| c == '\n' || c == '\t' || !needs_escape(c)), "{out:?}");
        }
        assert!(escape_line(&nasty).chars().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn padding_applies_to_the_escaped_form() {
        assert_eq!(format!("[{:<8}]", Escaped("a\u{1b}")), "[a\\x1b   ]");
        assert_eq!(format!("[{:<6}]", Escaped("bob")), "[bob   ]");
    }
}
