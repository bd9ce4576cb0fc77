//! Everything the CLI prints: human text by default, one JSON document per command with `--json`
//! (JSON lines for `online`). The JSON shapes are documented in docs/cli.md. In human text every
//! string that came from the network is escaped ([`crate::sanitize`]).

use peerline_client::tls::TlsSetupError;
use peerline_client::wire::{ChatMessage, Contact, Event, Presence, Reply, Status};
use peerline_client::{ClientError, Reconnected, Settings};
use serde_json::{Value, json};

use crate::sanitize::{Escaped, escape_line, escape_text};

/// The printer.
pub struct Out {
    json: bool,
}

fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm), to print UTC times without a
/// date crate.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
            let mut retry_after_secs = None;
            let (code, message) = match err.downcast_ref::<ClientError>() {
                Some(ClientError::Server(body)) => {
                    retry_after_secs = body.retry_after_secs;
                    (serde_json::to_value(body.code).unwrap_or(Value::Null), body.message.clone())
                }
                Some(e @ ClientError::CertificateChanged { .. }) => {
                    (json!("certificate_changed"), e.to_string())
                }
                Some(e @ ClientError::TlsSetup(TlsSetupError::PinConflict { .. })) => {
                    (json!("pin_conflict"), e.to_string())
                }
                Some(e @ ClientError::NotLoggedIn { .. }) => {
                    (json!("not_logged_in"), e.to_string())
                }
                Some(e @ ClientError::Connect { .. }) => (json!("unreachable"), e.to_string()),
                _ => (json!("client_error"), format!("{err:#}")),
            };
            let mut error = json!({"code": code, "message": message});
            if let (Some(secs), Some(map)) = (retry_after_secs, error.as_object_mut()) {
                map.insert("retry_after_secs".into(), json!(secs));
            }
            self.print_json(&json!({ "error": error }));
        } else {
            // Error texts carry what the supernode said (its message, usernames).
            eprintln!("error: {}", escape_text(&format!("{err:#}")));
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
            println!("Sent to {} (message {}, {} UTC).", Escaped(&m.to), m.id, when(m.sent_at));
        }
    }

    /// A list of messages.
    pub fn messages(&self, messages: &[ChatMessage]) {
        if self.json {
            return self.print_json(&messages);
        }
        if messages.is_empty() {
            println!("No messages.");
        }
        for m in messages {
            let receipt = if m.read_at.is_some() {
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
                        "{:>4}  {:<32} {}{} last login {} UTC  key {}…",
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

    /// `online` started.
    pub fn connected(&self, username: &str) {
        if self.json {
            self.print_json(&json!({"type": "connected", "username": username}));
        } else {
            println!("Online as {}. Ctrl-C to quit.", Escaped(username));
        }
    }

    /// `online` lost its supernode and is reconnecting.
    pub fn connection_lost(&self, supernode: &str) {
        if self.json {
            self.print_json(&json!({"type": "connection_lost", "supernode": supernode}));
        } else {
            println!("Lost the connection to {}; reconnecting…", Escaped(supernode));
        }
    }

    /// `online` is back, on `reconnected.url`, `after` the loss.
    pub fn reconnected(&self, reconnected: &Reconnected, after: std::time::Duration) {
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        if self.json {
            self.print_json(&json!({
                "type": "reconnected",
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
            return self.print_json(event);
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
            Event::Message { message: m } => println!("{}", message_line(m)),
            Event::Receipt { message_id, kind, .. } => {
                let what = match kind {
                    peerline_client::wire::ReceiptKind::Delivered => "✓ delivered",
                    peerline_client::wire::ReceiptKind::Read => "✓✓ read",
                };
                println!("message {message_id} {what}");
            }
            Event::SessionEnded { reason } => {
                let reason = serde_json::to_value(reason).unwrap_or(Value::Null);
                println!("Session ended: {}", reason.as_str().unwrap_or("unknown"));
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
    use super::when;

    #[test]
    fn utc_times() {
        assert_eq!(when(0), "1970-01-01 00:00:00");
        // Reference values from `date -u -d @SECONDS`.
        assert_eq!(when(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00:00");
    }
}
