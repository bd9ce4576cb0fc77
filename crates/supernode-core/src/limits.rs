//! What any one connection, account or address may do, and how fast: the per-connection request
//! and search rates, the per-account contact request quota, the per-address registration quota,
//! the login throttle and the supernode's admission control. Limits answer with an error that
//! says how long to wait (`retry_after_secs`), never by dropping a request silently.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use peerline_wire::{EndReason, ErrorBody, ErrorCode};

use crate::hub::{ConnId, Hub, HubConfig, Output, UserId};
use crate::rate::TokenBucket;
use crate::throttle::{LoginThrottle, Source};

/// The hub's per-account and per-address limit state (per-connection state is in its `Conn`).
#[derive(Debug)]
pub(crate) struct Limits {
    contact_quota: HashMap<UserId, TokenBucket>,
    registrations: HashMap<Source, TokenBucket>,
    pub(crate) throttle: LoginThrottle,
    admission: TokenBucket,
    /// Password hashes running or queued, per source.
    hashing: HashMap<Source, u32>,
    /// Successful password logins, per account.
    password_logins: HashMap<String, TokenBucket>,
    /// Connections not logged in, per source.
    pre_login: HashMap<Source, u32>,
}

impl Limits {
    pub(crate) fn new(config: &HubConfig, now: Instant) -> Limits {
        Limits {
            contact_quota: HashMap::new(),
            registrations: HashMap::new(),
            throttle: LoginThrottle::new(
                config.login_per_account.clone(),
                config.login_per_device.clone(),
                config.login_per_address.clone(),
            ),
            admission: TokenBucket::new(config.login_burst, config.logins_per_sec, now),
            hashing: HashMap::new(),
            password_logins: HashMap::new(),
            pre_login: HashMap::new(),
        }
    }

    /// A connection counted against `source` logged in or closed.
    pub(crate) fn left_pre_login(&mut self, source: Option<Source>) {
        if let Some(source) = source {
            release(&mut self.pre_login, source);
        }
    }

    /// Forgets what no longer limits anyone.
    pub(crate) fn expire(&mut self, now: Instant) {
        // A full bucket carries no information; dropping it bounds the map by active senders.
        self.contact_quota.retain(|_, b| !b.is_full(now));
        self.registrations.retain(|_, b| !b.is_full(now));
        self.password_logins.retain(|_, b| !b.is_full(now));
        self.throttle.expire(now);
    }
}

/// Gives back one of `source`'s counted places; a source with none left is forgotten, so the
/// map holds only sources that have some.
fn release(counts: &mut HashMap<Source, u32>, source: Source) {
    if let Some(n) = counts.get_mut(&source) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&source);
        }
    }
}

/// A refusal that says when to try again.
pub(crate) fn retry_error(code: ErrorCode, wait: Duration) -> ErrorBody {
    let mut body = ErrorBody::new(code);
    body.retry_after_secs = Some(wait.as_secs().saturating_add(1));
    body
}

impl Hub {
    /// A new connection from `addr` (TLS done, WebSocket open), unless that source already has
    /// its share of connections that have not logged in (then `false`, and nothing changed).
    pub fn connect_from(&mut self, conn: ConnId, addr: IpAddr, now: Instant) -> bool {
        let source = Source::from(addr);
        let open = self.limits.pre_login.get(&source).copied().unwrap_or(0);
        if open >= self.config.max_pre_login_per_source {
            return false;
        }
        self.connect(conn, now);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pre_login_source = Some(source);
            *self.limits.pre_login.entry(source).or_insert(0) += 1;
        }
        true
    }

    /// Admits one request from a connection: counts it as activity (heartbeat) and applies the
    /// per-connection rate limit. Too many violations close the connection.
    pub fn admit(&mut self, conn: ConnId, now: Instant) -> Result<(), ErrorBody> {
        let max_violations = self.config.max_violations;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(ErrorBody::new(ErrorCode::ShuttingDown));
        };
        c.last_activity = now;
        match c.requests.try_take(now) {
            Ok(()) => Ok(()),
            Err(wait) => {
                c.violations += 1;
                if c.violations > max_violations && !c.closing {
                    c.closing = true;
                    self.outputs.push(Output::Close { conn, reason: EndReason::ProtocolViolation });
                }
                Err(retry_error(ErrorCode::RateLimited, wait))
            }
        }
    }

    /// Counts a protocol violation (malformed frame and the like) against a connection.
    pub fn violation(&mut self, conn: ConnId) {
        let max_violations = self.config.max_violations;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.violations += 1;
            if c.violations > max_violations && !c.closing {
                c.closing = true;
                self.outputs.push(Output::Close { conn, reason: EndReason::ProtocolViolation });
            }
        }
    }

    /// Applies the per-connection search rate limit.
    pub fn admit_search(&mut self, conn: ConnId, now: Instant) -> Result<(), ErrorBody> {
        let c = self.conns.get_mut(&conn).ok_or_else(|| ErrorBody::new(ErrorCode::ShuttingDown))?;
        c.searches.try_take(now).map_err(|wait| retry_error(ErrorCode::RateLimited, wait))
    }

    /// Applies the per-account contact request quota.
    pub fn admit_contact_request(&mut self, user: UserId, now: Instant) -> Result<(), ErrorBody> {
        let per_day = self.config.contact_requests_per_day;
        self.limits
            .contact_quota
            .entry(user)
            .or_insert_with(|| TokenBucket::new(per_day, per_day / 86_400.0, now))
            .try_take(now)
            .map_err(|wait| retry_error(ErrorCode::ContactRequestLimit, wait))
    }

    /// Applies the per-source registration quota.
    pub fn admit_registration(&mut self, addr: IpAddr, now: Instant) -> Result<(), ErrorBody> {
        let per_hour = self.config.registrations_per_hour;
        self.limits
            .registrations
            .entry(Source::from(addr))
            .or_insert_with(|| TokenBucket::new(per_hour, per_hour / 3600.0, now))
            .try_take(now)
            .map_err(|wait| retry_error(ErrorCode::RateLimited, wait))
    }

    /// Admission control: whether this supernode takes another login now. Refused logins get
    /// how long to wait (the driver adds a random share, so that refused clients do not come
    /// back together).
    pub fn admit_login(&mut self, now: Instant) -> Result<(), Duration> {
        self.limits.admission.try_take(now)
    }

    /// Starts a password check (login, or a password change): refused while the account (or,
    /// for a device key registered to it, that device) or the source is throttled, while the
    /// source already has its share of hashes running or queued, or while the account has had
    /// its share of successful password logins. Counted as a failure until
    /// [`Hub::end_password`] says otherwise, which must follow every `Ok`.
    pub fn begin_password(
        &mut self,
        username: &str,
        registered_device: Option<[u8; 32]>,
        addr: IpAddr,
        now: Instant,
    ) -> Result<(), ErrorBody> {
        let source = Source::from(addr);
        let limits = &mut self.limits;
        limits
            .throttle
            .check_password(username, registered_device, source, now)
            .map_err(|wait| retry_error(ErrorCode::LoginThrottled, wait))?;
        if let Some(bucket) = limits.password_logins.get_mut(username) {
            bucket.check(now).map_err(|wait| retry_error(ErrorCode::RateLimited, wait))?;
        }
        let running = limits.hashing.entry(source).or_insert(0);
        if *running >= self.config.hashes_per_source {
            return Err(retry_error(ErrorCode::RateLimited, Duration::ZERO));
        }
        *running += 1;
        limits.throttle.begin_password(username, registered_device, source, now);
        Ok(())
    }

    /// Ends a password check begun with [`Hub::begin_password`]: `ok` when the password was
    /// right (the failure counted in advance is taken back, and the account's successful
    /// logins are counted).
    pub fn end_password(
        &mut self,
        username: &str,
        registered_device: Option<[u8; 32]>,
        addr: IpAddr,
        ok: bool,
        now: Instant,
    ) {
        let source = Source::from(addr);
        let limits = &mut self.limits;
        release(&mut limits.hashing, source);
        if ok {
            limits.throttle.password_ok(username, registered_device, source);
            let per_hour = self.config.password_logins_per_hour;
            let burst = (per_hour / 6.0).max(1.0);
            let _ = limits
                .password_logins
                .entry(username.to_owned())
                .or_insert_with(|| TokenBucket::new(burst, per_hour / 3600.0, now))
                .try_take(now);
        }
    }

    /// Whether a token login from this address may proceed now (only bad tokens from the same
    /// source can hold it).
    pub fn check_token(&self, addr: IpAddr, now: Instant) -> Result<(), ErrorBody> {
        self.limits
            .throttle
            .check_token(Source::from(addr), now)
            .map_err(|wait| retry_error(ErrorCode::LoginThrottled, wait))
    }

    /// Records a token that was not valid.
    pub fn token_failed(&mut self, addr: IpAddr, now: Instant) {
        self.limits.throttle.token_failed(Source::from(addr), now);
    }
}
