//! `turn_credentials`: short-lived credentials for the TURN relays, in coturn's "TURN REST API"
//! scheme (`use-auth-secret`): the username carries the expiry time, the password is
//! base64(HMAC-SHA1(secret, username)), so any relay that knows the secret checks them without
//! asking the supernode, and refuses them once expired. They are never logged.

use base64::Engine;
use hmac::{Hmac, Mac};
use peerline_wire::{ErrorBody, ErrorCode, Reply};
use sha1::Sha1;

use crate::session::Session;
use crate::state::now_ms;

/// The credentials for `user`, valid until `expiry` (seconds since the Unix epoch).
pub(crate) fn turn_rest_credentials(
    secret: &str,
    user: &str,
    expiry: i64,
) -> Option<(String, String)> {
    let username = format!("{expiry}:{user}");
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Some((username, password))
}

impl Session {
    pub(crate) fn turn_credentials(&mut self) -> Result<Reply, ErrorBody> {
        let me = self.me()?;
        let turn = &self.shared.config.turn;
        let ttl_secs = turn.credential_lifetime_secs;
        let (Some(secret), false) = (&turn.static_auth_secret, turn.urls.is_empty()) else {
            return Ok(Reply::TurnCredentials {
                username: String::new(),
                password: String::new(),
                ttl_secs: 0,
                urls: Vec::new(),
            });
        };
        let expiry = now_ms() / 1000 + i64::try_from(ttl_secs).unwrap_or(600);
        let (username, password) = turn_rest_credentials(secret, &me.username, expiry)
            .ok_or_else(|| ErrorBody::new(ErrorCode::Internal))?;
        Ok(Reply::TurnCredentials { username, password, ttl_secs, urls: turn.urls.clone() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_coturn_rest_scheme() {
        // Reference: python3 -c "import hmac,hashlib,base64;
        //   print(base64.b64encode(hmac.new(b'north-sea-secret-42', b'1795000000:alice',
        //   hashlib.sha1).digest()).decode())"
        let (user, pass) =
            turn_rest_credentials("north-sea-secret-42", "alice", 1_795_000_000).unwrap();
        assert_eq!(user, "1795000000:alice");
        assert_eq!(pass, REFERENCE);
    }

    const REFERENCE: &str = "slaBwkKjwYebcXYlzJ67d06GWuw=";
}
