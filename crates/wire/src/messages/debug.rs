//! `Debug` for the messages that carry secrets (passwords, session tokens, TURN passwords),
//! written out so that `{:?}` in a log line, a panic message or an error never shows them.
//! Every variant is listed: a new one does not compile until it says here which of its fields
//! are secret.

use std::fmt;

use super::{Login, Reply, Request};

/// Shown in place of a secret.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A `debug_struct` of the bound fields (shown) and then the secret ones (as `<redacted>`).
macro_rules! show {
    ($f:expr, $name:literal $(, $field:ident)* $(; $secret:ident)*) => {
        $f.debug_struct($name)
            $(.field(stringify!($field), $field))*
            $(.field(stringify!($secret), &Redacted))*
            .finish()
    };
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hello { version, client } => show!(f, "Hello", version, client),
            Self::Register { username, display_name, password: _ } => {
                show!(f, "Register", username, display_name; password)
            }
            Self::Login(login) => f.debug_tuple("Login").field(login).finish(),
            Self::Logout => f.write_str("Logout"),
            Self::ChangePassword { old_password: _, new_password: _ } => {
                show!(f, "ChangePassword"; old_password; new_password)
            }
            Self::Whoami => f.write_str("Whoami"),
            Self::Devices => f.write_str("Devices"),
            Self::RemoveDevice { device_id } => show!(f, "RemoveDevice", device_id),
            Self::SetProfile { display_name, discoverable } => {
                show!(f, "SetProfile", display_name, discoverable)
            }
            Self::Search { query } => show!(f, "Search", query),
            Self::Contacts { after } => show!(f, "Contacts", after),
            Self::ContactAdd { username, message } => show!(f, "ContactAdd", username, message),
            Self::ContactAccept { username } => show!(f, "ContactAccept", username),
            Self::ContactDecline { username } => show!(f, "ContactDecline", username),
            Self::ContactRemove { username } => show!(f, "ContactRemove", username),
            Self::ContactBlock { username } => show!(f, "ContactBlock", username),
            Self::SetStatus { status } => show!(f, "SetStatus", status),
            Self::SendMessage { to, text } => show!(f, "SendMessage", to, text),
            Self::AckDelivered { ids } => show!(f, "AckDelivered", ids),
            Self::MarkRead { ids } => show!(f, "MarkRead", ids),
            Self::Inbox { limit, after } => show!(f, "Inbox", limit, after),
            Self::History { with, limit, before } => show!(f, "History", with, limit, before),
            Self::Ping => f.write_str("Ping"),
            Self::DeviceKeys { username } => show!(f, "DeviceKeys", username),
            Self::CallInvite { call_id, to, sdp, fingerprint_signature } => {
                show!(f, "CallInvite", call_id, to, sdp, fingerprint_signature)
            }
            Self::CallRinging { call_id } => show!(f, "CallRinging", call_id),
            Self::CallAccept { call_id, sdp, fingerprint_signature } => {
                show!(f, "CallAccept", call_id, sdp, fingerprint_signature)
            }
            Self::CallDecline { call_id, busy, reason } => {
                show!(f, "CallDecline", call_id, busy, reason)
            }
            Self::CallCancel { call_id } => show!(f, "CallCancel", call_id),
            Self::CallHangup { call_id } => show!(f, "CallHangup", call_id),
            Self::CallCandidate { call_id, candidate } => {
                show!(f, "CallCandidate", call_id, candidate)
            }
            Self::CallRestart { call_id, sdp } => show!(f, "CallRestart", call_id, sdp),
            Self::CallResume { call_id } => show!(f, "CallResume", call_id),
            Self::TurnCredentials => f.write_str("TurnCredentials"),
            Self::AckMissedCalls { ids } => show!(f, "AckMissedCalls", ids),
            Self::CallReport(report) => f.debug_tuple("CallReport").field(report).finish(),
            Self::CallLog { missed, before, limit } => {
                show!(f, "CallLog", missed, before, limit)
            }
        }
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Login { username, password, token, device, quiet } = self;
        // Which of the two was sent matters when reading a log; what it was never does.
        f.debug_struct("Login")
            .field("username", username)
            .field("password", &password.as_ref().map(|_| Redacted))
            .field("token", &token.as_ref().map(|_| Redacted))
            .field("device", device)
            .field("quiet", quiet)
            .finish()
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hello { version, server, nonce, heartbeat_timeout_secs, stun_port } => {
                show!(f, "Hello", version, server, nonce, heartbeat_timeout_secs, stun_port)
            }
            Self::Done => f.write_str("Done"),
            Self::Registered { username } => show!(f, "Registered", username),
            Self::LoggedIn { username, display_name, device_id, token: _, status, supernodes } => {
                show!(f, "LoggedIn", username, display_name, device_id, status, supernodes; token)
            }
            Self::Me(profile) => f.debug_tuple("Me").field(profile).finish(),
            Self::Devices { devices } => show!(f, "Devices", devices),
            Self::SearchResults { users } => show!(f, "SearchResults", users),
            Self::Contacts { contacts, more } => show!(f, "Contacts", contacts, more),
            Self::MessageSent { message } => show!(f, "MessageSent", message),
            Self::Messages { messages, more } => show!(f, "Messages", messages, more),
            Self::Pong => f.write_str("Pong"),
            Self::CallLog { calls, more } => show!(f, "CallLog", calls, more),
            Self::DeviceKeys { username, devices } => show!(f, "DeviceKeys", username, devices),
            Self::TurnCredentials { username, password: _, ttl_secs, urls } => {
                show!(f, "TurnCredentials", username, ttl_secs, urls; password)
            }
            Self::CallPlaced { call_id, ringing_devices } => {
                show!(f, "CallPlaced", call_id, ringing_devices)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{ClientFrame, DeviceProof, ServerFrame, Status};
    use super::*;

    const SECRETS: [&str; 4] = ["hunter2-password", "tok-3f9a", "new-pass-77", "turn-pw-b64="];

    fn assert_hidden(shown: &str) {
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
    }

    fn device() -> DeviceProof {
        DeviceProof {
            public_key: "ab".into(),
            signature: "cd".into(),
            name: "laptop".into(),
            channel_binding: None,
        }
    }

    #[test]
    fn login_requests_never_show_the_password_or_token() {
        let login = Login {
            username: "alice".into(),
            password: Some("hunter2-password".into()),
            token: Some("tok-3f9a".into()),
            device: device(),
            quiet: false,
        };
        let frame = ClientFrame { id: 7, request: Request::Login(login) };
        let shown = format!("{frame:?} {frame:#?}");
        assert_hidden(&shown);
        assert!(shown.contains("alice") && shown.contains("laptop"), "the rest is shown: {shown}");
        assert!(shown.contains("password: Some(<redacted>)"), "{shown}");

        for request in [
            Request::Register {
                username: "alice".into(),
                display_name: None,
                password: "hunter2-password".into(),
            },
            Request::ChangePassword {
                old_password: "hunter2-password".into(),
                new_password: "new-pass-77".into(),
            },
        ] {
            assert_hidden(&format!("{request:?}"));
        }
    }

    #[test]
    fn replies_never_show_the_session_token_or_turn_password() {
        let logged_in = Reply::LoggedIn {
            username: "alice".into(),
            display_name: "Alice".into(),
            device_id: 3,
            token: "tok-3f9a".into(),
            status: Status::Online,
            supernodes: Vec::new(),
        };
        let turn = Reply::TurnCredentials {
            username: "1795000000:alice".into(),
            password: "turn-pw-b64=".into(),
            ttl_secs: 600,
            urls: vec!["turn:relay.example.org:3478".into()],
        };
        for result in [logged_in, turn] {
            let shown = format!("{:?}", ServerFrame::Ok { id: 1, result });
            assert_hidden(&shown);
            assert!(shown.contains("<redacted>") && shown.contains("alice"), "{shown}");
        }
    }

    #[test]
    fn requests_without_secrets_look_as_derived() {
        let search = Request::Search { query: "bo".into() };
        assert_eq!(format!("{search:?}"), r#"Search { query: "bo" }"#);
        assert_eq!(format!("{:?}", Request::Ping), "Ping");
    }
}
