//! Rules for what users type: usernames, display names, passwords, messages, search queries.
//! The supernode enforces them; clients check them early for friendlier errors.
//!
//! Texts that other people see are also kept from taking over their screen: control characters
//! (C0, DEL, C1: ESC starts terminal escape sequences, CR rewrites a line) are refused everywhere
//! but the line breaks and tabs of a message. Display names and greetings are short, one-line and
//! shown next to who sent them, so they also refuse bidirectional embeddings, overrides and
//! isolates (which make a name display as another, the "Trojan Source" trick, CVE-2021-42574),
//! line separators and invisible characters. Messages keep those (phones insert bidi controls
//! around copied text); clients must show them safely, as the CLI does by escaping them.

use crate::MAX_MESSAGE_BYTES;
use crate::error::{ErrorBody, ErrorCode};

/// Shortest and longest username.
pub const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
/// Longest display name, in Unicode characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in bytes; bounds the cost of hashing attacker input.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest contact request greeting, in characters.
pub const MAX_GREETING_CHARS: usize = 256;
/// Search query length bounds, in characters.
pub const QUERY_CHARS: std::ops::RangeInclusive<usize> = 2..=64;

/// Canonicalizes a username: folds ASCII upper case to lower case (names are unique regardless of
/// case) and checks it is 3-32 of `a-z 0-9 . _ -`.
pub fn username(raw: &str) -> Result<String, ErrorCode> {
    let name = raw.to_ascii_lowercase();
    let ok_chars =
        name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok_chars && USERNAME_LEN.contains(&name.len()) {
        Ok(name)
    } else {
        Err(ErrorCode::InvalidUsername)
    }
}

/// Whether `c` is a bidirectional embedding, override or isolate control (U+202A-202E,
/// U+2066-2069): each reorders the text after it until its terminator or the end of the
/// paragraph. The implicit marks (U+200E, U+200F, U+061C) only nudge neutral characters and are
/// not in this set.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` is an invisible character with no place in a name: zero-width space (U+200B),
/// word joiner and invisible operators (U+2060-2064), zero-width no-break space (U+FEFF). The
/// zero-width joiner and non-joiner (U+200D, U+200C) are not here: emoji sequences and scripts
/// such as Persian need them.
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// Whether `c` may not appear in a one-line text others see next to a username (display names,
/// greetings): a control character, a bidi control, a line or paragraph separator, or an
/// invisible character.
fn unfit_for_a_label(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || is_invisible(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Checks a display name: 1-64 characters, trimmed, none of them a control character, a bidi
/// control, a line separator or an invisible character (see the module's comment).
pub fn display_name(raw: &str) -> Result<String, ErrorCode> {
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_DISPLAY_NAME_CHARS || name.chars().any(unfit_for_a_label) {
        return Err(ErrorCode::InvalidDisplayName);
    }
    Ok(name.to_owned())
}

/// Checks a new password's length.
pub fn password(raw: &str) -> Result<(), ErrorCode> {
    if raw.chars().count() < MIN_PASSWORD_CHARS || raw.len() > MAX_PASSWORD_BYTES {
        return Err(ErrorCode::WeakPassword);
    }
    Ok(())
}

/// The first character of `text` that `unfit` refuses, with its position in characters.
fn first_unfit(text: &str, unfit: impl Fn(char) -> bool) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| unfit(*c))
}

/// Checks an instant message text: not blank, at most [`MAX_MESSAGE_BYTES`], and no control
/// character but line feed and tab (a carriage return could overwrite a line on the
/// recipient's terminal; send line breaks as `\n`). Refusals are `empty_message`,
/// `message_too_long` or `invalid_argument` with a message naming the character.
pub fn message_text(text: &str) -> Result<(), ErrorBody> {
    if text.trim().is_empty() {
        return Err(ErrorCode::EmptyMessage.into());
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ErrorCode::MessageTooLong.into());
    }
    if let Some((at, c)) = first_unfit(text, |c| c.is_control() && !matches!(c, '\n' | '\t')) {
        return Err(ErrorBody::with_message(
            ErrorCode::InvalidArgument,
            format!(
                "the message holds control character U+{:04X} at character {at}; only line \
                 breaks (\\n) and tabs may be sent",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// Checks a contact request greeting; an empty one becomes `None`. At most
/// [`MAX_GREETING_CHARS`], on one line, and like a display name without control characters,
/// bidi controls or invisible characters. Refusals are `invalid_argument`.
pub fn greeting(raw: Option<&str>) -> Result<Option<String>, ErrorBody> {
    let text = match raw.map(str::trim) {
        None | Some("") => return Ok(None),
        Some(text) => text,
    };
    if text.chars().count() > MAX_GREETING_CHARS {
        return Err(ErrorBody::with_message(
            ErrorCode::InvalidArgument,
            format!("the greeting is longer than {MAX_GREETING_CHARS} characters"),
        ));
    }
    if let Some((at, c)) = first_unfit(text, unfit_for_a_label) {
        return Err(ErrorBody::with_message(
            ErrorCode::InvalidArgument,
            format!(
                "the greeting holds U+{:04X} at character {at}; a greeting is one line without \
                 control, bidirectional-override or invisible characters",
                u32::from(c)
            ),
        ));
    }
    Ok(Some(text.to_owned()))
}

/// Checks and normalizes a search query (trimmed, lower-cased).
pub fn search_query(raw: &str) -> Result<String, ErrorCode> {
    let q = raw.trim().to_lowercase();
    if QUERY_CHARS.contains(&q.chars().count()) && !q.chars().any(char::is_control) {
        Ok(q)
    } else {
        Err(ErrorCode::InvalidQuery)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(username("Alice").unwrap(), "alice");
        assert_eq!(username("a.b_c-9").unwrap(), "a.b_c-9");
        for bad in ["ab", "", "al ice", "alicé", &"x".repeat(33), "a/b", "ALİCE"] {
            assert_eq!(username(bad), Err(ErrorCode::InvalidUsername), "{bad:?}");
        }
        assert!(username(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn display_names_count_characters_not_bytes() {
        assert!(display_name(&"é".repeat(64)).is_ok());
        assert!(display_name(&"é".repeat(65)).is_err());
        assert!(display_name("  ").is_err());
        assert!(display_name("a\nb").is_err());
    }

    #[test]
    fn passwords_and_messages() {
        assert!(password("1234567").is_err());
        assert!(password("12345678").is_ok());
        assert!(password(&"x".repeat(2000)).is_err());
        let code = |r: Result<(), ErrorBody>| r.map_err(|e| e.code);
        assert_eq!(code(message_text(" ")), Err(ErrorCode::EmptyMessage));
        assert!(message_text(&"x".repeat(4096)).is_ok());
        assert_eq!(code(message_text(&"x".repeat(4097))), Err(ErrorCode::MessageTooLong));
    }

    /// Escape sequences an attacker would send to rewrite a recipient's terminal.
    const ATTACKS: &[&str] = &[
        "\u{1b}[2J\u{1b}[H",   // clear the screen, cursor home
        "\u{1b}]0;pwned\u{7}", // set the window title (OSC 0)
        "\u{1b}]8;;https://evil.example\u{1b}\\click\u{1b}]8;;\u{1b}\\", // OSC 8 hyperlink
        "ok\rIDENTITY CHANGED: forged", // overwrite the line
        "\u{9b}31m",           // C1 CSI
        "\u{7f}",              // DEL
        "\u{0}",
    ];

    #[test]
    fn messages_refuse_control_characters_but_keep_line_breaks_and_tabs() {
        assert!(message_text("line one\nline two\n\tindented").is_ok());
        assert!(message_text("\u{202e}txt.exe and \u{200b} stay: clients escape them").is_ok());
        for attack in ATTACKS {
            let err = message_text(attack).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{attack:?}");
            assert!(err.message.contains("control character U+"), "{}", err.message);
        }
        let err = message_text("hi\u{1b}[2J").unwrap_err();
        assert!(err.message.contains("U+001B at character 2"), "{}", err.message);
    }

    #[test]
    fn greetings_are_one_line_without_controls_bidi_or_invisibles() {
        assert_eq!(
            greeting(Some("  hi, it's Bob 👋  ")).unwrap().as_deref(),
            Some("hi, it's Bob 👋")
        );
        assert_eq!(greeting(Some(" ")).unwrap(), None);
        assert_eq!(greeting(None).unwrap(), None);
        // Emoji sequences need the zero-width joiner.
        assert!(greeting(Some("from the 👨\u{200d}👩\u{200d}👧 family")).is_ok());
        let refused = [
            "two\nlines",
            "tab\there",
            "\u{202e}gnp.exe",
            "a\u{2066}b\u{2069}",
            "zero\u{200b}width",
            "\u{feff}bom",
            "line\u{2028}sep",
        ];
        for bad in ATTACKS.iter().chain(&refused) {
            let err = greeting(Some(bad)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{bad:?}");
            assert!(err.message.contains("U+"), "{}", err.message);
        }
        let err = greeting(Some(&"x".repeat(MAX_GREETING_CHARS + 1))).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert!(greeting(Some(&"x".repeat(MAX_GREETING_CHARS))).is_ok());
    }

    #[test]
    fn display_names_refuse_controls_bidi_and_invisibles() {
        for bad in
            ATTACKS.iter().chain(&["Bob\u{202e}nimda", "\u{2067}Bob", "B\u{200b}ob", "Bo\u{2029}b"])
        {
            assert_eq!(display_name(bad), Err(ErrorCode::InvalidDisplayName), "{bad:?}");
        }
        for good in ["Zoë", "אליס", "علي", "👨\u{200d}👩\u{200d}👧", "Mehr\u{200c}dad"]
        {
            assert!(display_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn the_character_classes() {
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}'] {
            assert!(is_bidi_control(c));
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert!(is_bidi_control(c));
        }
        assert!(!is_bidi_control('\u{200f}') && !is_bidi_control('a'));
        for c in ['\u{200b}', '\u{2060}', '\u{2064}', '\u{feff}'] {
            assert!(is_invisible(c));
        }
        assert!(!is_invisible('\u{200d}') && !is_invisible(' '));
    }
}
