//! Everything the CLI prints: human text by default, one JSON document per command with `--json`
//! (JSON lines for `online`). The JSON shapes are documented in docs/cli.md. In human text every
//! string that came from the network is escaped ([`crate::sanitize`]).

use peerline_client::tls::TlsSetupError;
use peerline_client::wire::{ChatMessage, Contact, Event, Presence, Reply, Status};
use peerline_client::{ClientError, Reconnected, Settings};
use serde_json::{Value, json};

use crate::failure::CliError;
use crate::sanitize::{Escaped, escape_line, escape_text};

/// The printer.
pub struct Out {
    json: bool,
}

/// A time as people read it: in the local time zone (honouring `TZ`), with its UTC offset, so
/// that a time copied into a chat with someone elsewhere still means one instant.
pub(crate) fn when(ms: i64) -> String {
    when_in(ms, &jiff::tz::TimeZone::system())
}

/// [`when`] in the zone `tz`; the milliseconds since the epoch as they are if out of range.
fn when_in(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %:z").to_string(),
        Err(_) => format!("{ms} ms since 1970"),
    }
}

/// The error and its causes, each said once: a cause whose text the one before it already
/// contains (an I/O error that its wrapper quotes) is left out.
pub fn chain_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let said = cause.to_string();
        if !previous.is_empty() && previous.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
        previous = said;
    }
    text
}

/// The kind of a JSON line of `online`: the one key every line has (`"event"`), as the call
/// lines have it. Protocol events carry their kind in `type`, which is renamed here.
fn event_json(event: &Event) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut()
        && let Some(kind) = map.remove("type")
    {
        map.insert("event".into(), kind);
    }
    value
}

/// A message as one entry of a conversation: names on one line, the text's own lines indented.
fn message_line(m: &ChatMessage) -> String {
    format!(
        "[{}] {} → {}: {}",
        when(m.sent_at),
        Escaped(&m.from),
        Escaped(&m.to),
        escape_text(&m.text)
    )
}

fn presence_mark(p: Presence) -> &'static str {
    match p {
        Presence::Online => "●",
        Presence::Away => "◐",
        Presence::Busy => "⊘",
        Presence::Offline => "○",
    }
}

/// The `{"code","message"}` of an error document (plus `retry_after_secs` when the supernode
/// said when to try again, and `reason` when it ended the session).
fn error_json(err: &anyhow::Error) -> Value {
    let mut extra: Vec<(&str, Value)> = Vec::new();
    let (code, message) = if let Some(cli) = err.downcast_ref::<CliError>() {
        (json!(cli.code), chain_text(err))
    } else {
        match err.downcast_ref::<ClientError>() {
            Some(ClientError::Server(body)) => {
                if let Some(secs) = body.retry_after_secs {
                    extra.push(("retry_after_secs", json!(secs)));
                }
                (serde_json::to_value(body.code).unwrap_or(Value::Null), body.message.clone())
            }
            Some(e @ ClientError::CertificateChanged { .. }) => {
                (json!("certificate_changed"), e.to_string())
            }
            Some(e @ ClientError::TlsSetup(TlsSetupError::PinConflict { .. })) => {
                (json!("pin_conflict"), e.to_string())
            }
            Some(e @ ClientError::NotLoggedIn { .. }) => (json!("not_logged_in"), e.to_string()),
            Some(ClientError::Connect { .. }) => (json!("unreachable"), chain_text(err)),
            Some(e @ ClientError::Closed(Some(reason))) => {
                extra.push(("reason", json!(reason)));
                (json!("session_ended"), e.to_string())
            }
            _ => (json!("client_error"), chain_text(err)),
        }
    };
    let mut error = json!({"code": code, "message": message});
    if let Some(map) = error.as_object_mut() {
        for (key, value) in extra {
            map.insert(key.into(), value);
        }
    }
    error
}

impl Out {
    /// A printer in the chosen mode.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether output is JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    fn print_json(&self, value: &impl serde::Serialize) {
        println!("{}", serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
    }

    /// An error: to stderr as text, or to stdout as `{"error":{...}}` with `--json`.
    pub fn error(&self, err: &anyhow::Error) {
        if self.json {
            self.print_json(&json!({ "error": error_json(err) }));
        } else {
            // Error texts carry what the supernode said (its message, usernames).
            eprintln!("error: {}", escape_text(&chain_text(err)));
        }
    }

    /// An error that does not end `online` (a call that failed): a line of its own, with
    /// `--json` `{"event":"error","error":{...}}`.
    pub fn error_event(&self, err: &anyhow::Error) {
        if self.json {
            self.print_json(&json!({ "event": "error", "error": error_json(err) }));
        } else {
            eprintln!("error: {}", escape_text(&chain_text(err)));
        }
    }

    /// A note for people (stderr), never mixed into JSON output. The caller escapes what it
    /// puts in from the network: a note may have line breaks of its own.
    pub fn note(&self, text: &str) {
        eprintln!("{text}");
    }

    /// A command that returns nothing. The text is escaped, since it often names a user.
    pub fn done(&self, text: &str) {
        if self.json {
            self.print_json(&json!({"ok": true, "message": text}));
        } else {
            println!("{}", escape_text(text));
        }
    }

    /// After register/login (the token is never printed).
    pub fn logged_in(&self, reply: &Reply, verb: &str) {
        if let Reply::LoggedIn { username, display_name, device_id, status, .. } = reply {
            if self.json {
                self.print_json(&json!({
                    "username": username, "display_name": display_name,
                    "device_id": device_id, "status": status,
                }));
            } else {
                println!(
                    "{verb} as {} ({}), device {device_id}, status {}.",
                    Escaped(username),
                    Escaped(display_name),
                    status.as_str()
                );
            }
        }
    }

    /// The status.
    pub fn status(&self, status: Status) {
        if self.json {
            self.print_json(&json!({"status": status}));
        } else {
            println!("Status: {}", status.as_str());
        }
    }

    /// The user's settings.
    pub fn settings(&self, settings: &Settings) {
        if self.json {
            self.print_json(settings);
        } else {
            let relay = if settings.relay_only {
                "on (calls go through a TURN relay; peers never learn your IP address)"
            } else {
                "off (calls go directly when possible)"
            };
            println!("relay_only: {relay}");
        }
    }

    /// A contact list.
    pub fn contacts(&self, contacts: &[Contact]) {
        if self.json {
            return self.print_json(&contacts);
        }
        if contacts.is_empty() {
            println!(
                "No contacts yet. Find people with `peerline search NAME`, then `peerline contacts add USER`."
            );
        }
        for c in contacts {
            let detail = match c.state {
                peerline_client::wire::ContactState::Accepted => c.presence.as_str().to_owned(),
                s => s.as_str().to_owned(),
            };
            let greeting =
                c.message.as_deref().map(|m| format!("  \"{}\"", Escaped(m))).unwrap_or_default();
            println!(
                "{} {:<20} {:<24} {detail}{greeting}",
                presence_mark(c.presence),
                Escaped(&c.username),
                Escaped(&c.display_name)
            );
        }
    }

    /// A sent message.
    pub fn sent(&self, m: &ChatMessage) {
        if self.json {
            self.print_json(m);
        } else {
            println!("Sent to {} (message {}, {}).", Escaped(&m.to), m.id, when(m.sent_at));
        }
    }

    /// A list of messages, as `me` sees them: delivery and read ticks only on the ones `me`
    /// sent (on a received message they are the sender's news, not this reader's).
    pub fn messages(&self, messages: &[ChatMessage], me: &str) {
        if self.json {
            return self.print_json(&messages);
        }
        if messages.is_empty() {
            println!("No messages.");
        }
        for m in messages {
            let receipt = if m.from != me {
                ""
            } else if m.read_at.is_some() {
                " ✓✓ read"
            } else if m.delivered_at.is_some() {
                " ✓ delivered"
            } else {
                ""
            };
            println!("{}{receipt}", message_line(m));
        }
    }

    /// Any other reply.
    pub fn reply(&self, reply: &Reply) {
        match reply {
            Reply::Me(p) if !self.json => println!(
                "{} ({}), device {}, status {}, {}",
                Escaped(&p.username),
                Escaped(&p.display_name),
                p.device_id,
                p.status.as_str(),
                if p.discoverable { "discoverable" } else { "hidden from search" }
            ),
            Reply::Me(p) => self.print_json(p),
            Reply::Devices { devices } if self.json => self.print_json(devices),
            Reply::Devices { devices } => {
                for d in devices {
                    println!(
                        "{:>4}  {:<32} {}{} last login {}  key {}…",
                        d.id,
                        Escaped(&d.name),
                        if d.online { "online" } else { "offline" },
                        if d.current { " (this device)" } else { "" },
                        when(d.last_seen_at),
                        Escaped(d.public_key.get(..16).unwrap_or(&d.public_key))
                    );
                }
            }
            Reply::SearchResults { users } if self.json => self.print_json(users),
            Reply::SearchResults { users } => {
                if users.is_empty() {
                    println!("Nobody found.");
                }
                for u in users {
                    println!("{:<24} {}", Escaped(&u.username), Escaped(&u.display_name));
                }
            }
            other if self.json => self.print_json(other),
            // A reply with no text form of its own: its JSON, which serde leaves with bidi
            // controls and invisible characters.
            other => println!("{}", escape_line(&serde_json::to_string(other).unwrap_or_default())),
        }
    }

    /// `online` started, as `username` with `status` (invisible users are told that nobody
    /// sees them online).
    pub fn connected(&self, username: &str, status: Status) {
        if self.json {
            self.print_json(&json!({"event": "online", "username": username, "status": status}));
        } else if status == Status::Invisible {
            println!(
                "Online as {} (invisible: others see you offline). Ctrl-C to quit.",
                Escaped(username)
            );
        } else {
            println!("Online as {} ({}). Ctrl-C to quit.", Escaped(username), status.as_str());
        }
    }

    /// `online` lost its supernode and is reconnecting.
    pub fn connection_lost(&self, supernode: &str) {
        if self.json {
            self.print_json(&json!({"event": "connection_lost", "supernode": supernode}));
        } else {
            println!("Lost the connection to {}; reconnecting…", Escaped(supernode));
        }
    }

    /// `online` is back, on `reconnected.url`, `after` the loss.
    pub fn reconnected(&self, reconnected: &Reconnected, after: std::time::Duration) {
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        if self.json {
            self.print_json(&json!({
                "event": "reconnected",
                "supernode": reconnected.url,
                "attempts": reconnected.attempts,
                "after_ms": after_ms,
            }));
        } else {
            println!("Back online via {} after {after_ms} ms.", Escaped(&reconnected.url));
        }
    }

    /// A pushed event (`online`).
    pub fn event(&self, event: &Event) {
        // Calls are shown by the call code, which knows their context; the raw signaling
        // (SDP, keys) is not for the terminal.
        if matches!(
            event,
            Event::CallIncoming { .. }
                | Event::CallRinging { .. }
                | Event::CallAccepted { .. }
                | Event::CallCandidate { .. }
                | Event::CallRestart { .. }
                | Event::CallEnded { .. }
        ) {
            return;
        }
        if self.json {
            return self.print_json(&event_json(event));
        }
        match event {
            Event::Presence { username, presence } => {
                println!(
                    "{} {} is {}",
                    presence_mark(*presence),
                    Escaped(username),
                    presence.as_str()
                );
            }
            Event::ContactRequest { username, display_name, message } => println!(
                "Contact request from {user} ({}){} — `peerline contacts accept {user}`",
                Escaped(display_name),
                message.as_deref().map(|m| format!(": \"{}\"", Escaped(m))).unwrap_or_default(),
                user = Escaped(username),
            ),
            Event::ContactAccepted { username } => {
                println!("{} is now a contact.", Escaped(username))
            }
            Event::ContactRemoved { username } => {
                println!("{} is no longer a contact.", Escaped(username))
            }
            Event::ContactDeclined { username } => {
                println!("{} declined your contact request.", Escaped(username))
            }
            Event::Message { message: m } => println!("{}", message_line(m)),
            Event::Receipt { message_id, kind, .. } => {
                let what = match kind {
                    peerline_client::wire::ReceiptKind::Delivered => "✓ delivered",
                    peerline_client::wire::ReceiptKind::Read => "✓✓ read",
                };
                println!("message {message_id} {what}");
            }
            Event::SessionEnded { reason } => {
                println!("Session ended: {}.", peerline_client::error::describe_end(*reason));
            }
            Event::MissedCall { missed } => {
                println!("[{}] Missed call from {}", when(missed.at), Escaped(&missed.from))
            }
            // Calls are shown by the call code, which knows their context.
            Event::CallIncoming { .. }
            | Event::CallRinging { .. }
            | Event::CallAccepted { .. }
            | Event::CallCandidate { .. }
            | Event::CallRestart { .. }
            | Event::CallEnded { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{chain_text, when_in};

    #[test]
    fn times_carry_their_zone() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(when_in(0, &utc), "1970-01-01 00:00:00 +00:00");
        // Reference values from `date -u -d @SECONDS`.
        assert_eq!(when_in(1_795_000_000_000, &utc), "2026-11-18 11:06:40 +00:00");
        let kolkata = jiff::tz::TimeZone::fixed(jiff::tz::offset(5));
        assert_eq!(when_in(951_782_400_000, &kolkata), "2000-02-29 05:00:00 +05:00");
    }

    #[test]
    fn a_cause_the_error_already_quotes_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = anyhow::Error::new(io).context("cannot reach sn: connection refused (retry)");
        assert_eq!(chain_text(&err), "cannot reach sn: connection refused (retry)");
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&err), "outer: inner");
    }
}
