//! Rules for what users type: usernames, display names, passwords, messages, search queries.
//! The supernode enforces them; clients check them early for friendlier errors.

use crate::MAX_MESSAGE_BYTES;
use crate::error::ErrorCode;

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

/// Checks a display name: 1-64 characters, no control characters, trimmed.
pub fn display_name(raw: &str) -> Result<String, ErrorCode> {
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_DISPLAY_NAME_CHARS || name.chars().any(char::is_control) {
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

/// Checks an instant message text.
pub fn message_text(text: &str) -> Result<(), ErrorCode> {
    if text.trim().is_empty() {
        Err(ErrorCode::EmptyMessage)
    } else if text.len() > MAX_MESSAGE_BYTES {
        Err(ErrorCode::MessageTooLong)
    } else {
        Ok(())
    }
}

/// Checks a contact request greeting; an empty one becomes `None`.
pub fn greeting(raw: Option<&str>) -> Result<Option<String>, ErrorCode> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) if text.chars().count() <= MAX_GREETING_CHARS => Ok(Some(text.to_owned())),
        Some(_) => Err(ErrorCode::InvalidArgument),
    }
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
        assert_eq!(message_text(" "), Err(ErrorCode::EmptyMessage));
        assert!(message_text(&"x".repeat(4096)).is_ok());
        assert_eq!(message_text(&"x".repeat(4097)), Err(ErrorCode::MessageTooLong));
    }
}
