//! Instant messages on the command line: the text of `send` (typed, or read from standard input
//! with `-`), `inbox` (the unread messages) and `history` (a page of a conversation, and how to
//! get the page before it).

use std::io::Read;

use peerline_client::Client;
use peerline_client::wire::{MAX_MESSAGE_BYTES, Request};

use crate::failure::CliError;
use crate::output::Out;

/// The text to send: the words typed, joined with spaces, or with a lone `-` all of `stdin`
/// (its lines kept, the line break that ends the input dropped). Checked against the protocol's
/// size limit here, so that a long message is refused with its size before anything is sent.
pub fn text(words: &[String], stdin: impl Read) -> anyhow::Result<String> {
    let text = if words == ["-"] {
        let mut bytes = Vec::new();
        // One byte more than fits is enough to know it does not.
        let limit = u64::try_from(MAX_MESSAGE_BYTES + 2).unwrap_or(u64::MAX);
        stdin.take(limit).read_to_end(&mut bytes).map_err(|e| {
            CliError::new("bad_input", format!("cannot read the message from standard input: {e}"))
        })?;
        let mut text = String::from_utf8(bytes).map_err(|_| {
            CliError::new("bad_input", "the message on standard input is not UTF-8 text")
        })?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    } else {
        words.join(" ")
    };
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(CliError::new(
            "message_too_long",
            format!(
                "the message is {} bytes; at most {MAX_MESSAGE_BYTES} bytes fit in one message \
                 (split it, or send a shorter one)",
                if words == ["-"] {
                    format!("more than {MAX_MESSAGE_BYTES}")
                } else {
                    text.len().to_string()
                }
            ),
        )
        .into());
    }
    if text.trim().is_empty() {
        return Err(CliError::new("empty_message", "the message is empty; nothing was sent").into());
    }
    Ok(text)
}

/// `inbox`: the unread messages, then marked read unless `peek`.
pub async fn inbox(client: &Client, out: &Out, limit: u32, peek: bool) -> anyhow::Result<()> {
    let me = client.logged_in_username()?;
    let messages = client.messages(Request::Inbox { limit: Some(limit), after: None }).await?;
    out.messages(&messages, &me);
    if !peek && !messages.is_empty() {
        let ids = messages.iter().map(|m| m.id).collect();
        client.done(Request::MarkRead { ids }).await?;
    }
    Ok(())
}

/// `history`: the newest `limit` messages with `with` (before the message `before`, for the
/// next page back), oldest first. When the page is full, asks for one message older than it:
/// if there is one, says how to see the page before (the supernode's `more` only says that a
/// reply was cut short, not that older messages exist).
pub async fn history(
    client: &Client,
    out: &Out,
    with: &str,
    limit: u32,
    before: Option<i64>,
) -> anyhow::Result<()> {
    let me = client.logged_in_username()?;
    let request = Request::History { with: with.to_owned(), limit: Some(limit), before };
    let messages = client.messages(request).await?;
    out.messages(&messages, &me);
    let full = u32::try_from(messages.len()).is_ok_and(|n| n >= limit);
    if let (true, Some(oldest)) = (full, messages.first()) {
        let probe =
            Request::History { with: with.to_owned(), limit: Some(1), before: Some(oldest.id) };
        if !client.messages(probe).await?.is_empty() {
            out.note(&format!(
                "Older messages: peerline history {} --limit {limit} --before {}",
                crate::sanitize::Escaped(with),
                oldest.id
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn stdin_keeps_its_lines_and_drops_the_last_line_break() {
        let text = text(&words(&["-"]), "line one\nline two\n".as_bytes()).ok();
        assert_eq!(text.as_deref(), Some("line one\nline two"));
        let typed = super::text(&words(&["hello", "bob"]), std::io::empty()).ok();
        assert_eq!(typed.as_deref(), Some("hello bob"));
    }

    #[test]
    fn too_long_or_empty_is_refused_before_sending() {
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        let err = text(&words(&["-"]), long.as_bytes()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("at most 4096 bytes")));
        let fits = "x".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(text(&words(&["-"]), fits.as_bytes()).ok().map(|t| t.len()), Some(4096));
        assert!(text(&words(&["-"]), "\n".as_bytes()).is_err());
    }
}
