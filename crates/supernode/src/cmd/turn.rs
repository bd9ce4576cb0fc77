//! `turn_credentials`: short-lived credentials for the TURN relays, in coturn's "TURN REST API"
//! scheme (`use-auth-secret`): the username carries the expiry time, the password is
//! base64(HMAC-SHA1(secret, username)), so any relay that knows the secret checks them without
//! asking the supernode, and refuses them once expired. They are never logged.
//!
//! coturn's `user-quota` counts allocations per username. A fresh expiry at every request would
//! make every request a new "user" with a quota of its own, so a user who asks again while at
//! least half of the lifetime is left gets the same credentials: one user holds at most two
//! valid usernames at a time (the current one, and the previous one in its last half-life).
//! Requests are rate-limited per user as well.

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use peerline_store::UserId;
use peerline_supernode_core::TokenBucket;
use peerline_wire::{ErrorBody, ErrorCode, Reply};
use sha1::Sha1;

use crate::config::Turn;
use crate::session::Session;
use crate::state::{TurnGrants, now_ms};

/// Users remembered before the first sweep of those whose credentials expired and whose rate
/// limit has refilled; later sweeps come when the table has doubled since the last one.
const MIN_PRUNE: usize = 1024;

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

impl TurnGrants {
    /// The expiry (Unix seconds) of the credentials `user` gets at `now` / `unix_now`: the one
    /// handed out last while at least half of its lifetime is left, else a new one. `Err` with
    /// the wait when the user asked too often.
    pub(crate) fn grant(
        &mut self,
        user: UserId,
        turn: &Turn,
        now: Instant,
        unix_now: i64,
    ) -> Result<i64, Duration> {
        if self.users.len() >= self.prune_at {
            self.prune(now, unix_now);
        }
        let lifetime = i64::try_from(turn.credential_lifetime_secs).unwrap_or(600);
        let per_minute = turn.credentials_per_minute;
        let (bucket, expiry) = self
            .users
            .entry(user)
            .or_insert_with(|| (TokenBucket::new(per_minute, per_minute / 60.0, now), 0));
        bucket.try_take(now)?;
        if (*expiry - unix_now) * 2 < lifetime {
            *expiry = unix_now + lifetime;
        }
        Ok(*expiry)
    }

    /// Forgets users with nothing left to remember: credentials expired, rate limit refilled.
    fn prune(&mut self, now: Instant, unix_now: i64) {
        self.users.retain(|_, (bucket, expiry)| *expiry > unix_now || !bucket.is_full(now));
        self.prune_at = MIN_PRUNE.max(self.users.len() * 2);
    }
}

impl Session {
    pub(crate) fn turn_credentials(&mut self) -> Result<Reply, ErrorBody> {
        let me = self.me()?;
        let turn = &self.shared.config.turn;
        let (Some(secret), false) = (&turn.static_auth_secret, turn.urls.is_empty()) else {
            return Ok(Reply::TurnCredentials {
                username: String::new(),
                password: String::new(),
                ttl_secs: 0,
                urls: Vec::new(),
            });
        };
        let unix_now = now_ms() / 1000;
        let granted = self
            .shared
            .turn_grants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .grant(me.user_id, turn, Instant::now(), unix_now);
        let expiry = granted.map_err(|wait| {
            let mut body = ErrorBody::with_message(
                ErrorCode::RateLimited,
                "too many turn_credentials requests: keep using the credentials you have (valid \
                 for their ttl_secs) and ask again after retry_after_secs",
            );
            body.retry_after_secs = Some(wait.as_secs().saturating_add(1));
            body
        })?;
        let (username, password) = turn_rest_credentials(secret, &me.username, expiry)
            .ok_or_else(|| ErrorBody::new(ErrorCode::Internal))?;
        let ttl_secs = u64::try_from(expiry - unix_now).unwrap_or(0);
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

    const T0: i64 = 1_795_000_000;

    fn turn() -> Turn {
        Turn { credential_lifetime_secs: 600, credentials_per_minute: 600.0, ..Turn::default() }
    }

    #[test]
    fn a_user_keeps_one_username_until_half_its_life_is_gone() {
        let (mut grants, turn, start) = (TurnGrants::default(), turn(), Instant::now());
        let at = |secs: i64| (start + Duration::from_secs(secs as u64), T0 + secs);
        let mut grant = |user, secs| {
            let (now, unix) = at(secs);
            grants.grant(user, &turn, now, unix).unwrap()
        };
        assert_eq!(grant(1, 0), T0 + 600, "a full lifetime at first");
        assert_eq!(grant(1, 1), T0 + 600, "asked again: the same username");
        assert_eq!(grant(1, 300), T0 + 600, "half of the lifetime is left");
        assert_eq!(grant(2, 300), T0 + 900, "every user has their own");
        assert_eq!(grant(1, 301), T0 + 901, "less than half left: a new one");
        assert_eq!(grant(1, 601), T0 + 901);
        // The next one comes only after the first expired: never more than two valid at once.
        assert_eq!(grant(1, 602), T0 + 1202);
    }

    #[test]
    fn a_user_who_asks_too_often_is_told_when_to_come_back() {
        let mut grants = TurnGrants::default();
        let turn = Turn { credentials_per_minute: 3.0, ..turn() };
        let t0 = Instant::now();
        for _ in 0..3 {
            grants.grant(1, &turn, t0, T0).unwrap();
        }
        let wait = grants.grant(1, &turn, t0, T0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20), "3 per minute: one every 20 s");
        assert!(grants.grant(2, &turn, t0, T0).is_ok(), "another user is not limited");
        assert!(grants.grant(1, &turn, t0 + wait, T0 + 20).is_ok(), "after the wait");
    }

    #[test]
    fn users_with_nothing_to_remember_are_forgotten() {
        let (mut grants, turn, t0) = (TurnGrants::default(), turn(), Instant::now());
        for user in 0..MIN_PRUNE as i64 {
            grants.grant(user, &turn, t0, T0).unwrap();
        }
        // An hour later every credential expired and every rate limit refilled.
        let later = t0 + Duration::from_secs(3600);
        grants.grant(-1, &turn, later, T0 + 3600).unwrap();
        assert_eq!(grants.users.len(), 1, "only the user who just asked");
    }
}
