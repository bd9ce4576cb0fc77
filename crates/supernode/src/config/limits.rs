//! `[limits]`: what protects the supernode from bad or abusive clients, with the range each
//! value must be in (a zero or negative limit would stop the service, not protect it).

use serde::{Deserialize, Serialize};

use super::validate::Checker;

/// Per-connection and per-account limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most simultaneous client connections; more are refused at once.
    pub max_connections: usize,
    /// Connections one account may have logged in to this supernode; a login past it closes
    /// the account's oldest connection (`session_ended`, `too_many_connections`).
    pub max_connections_per_user: usize,
    /// Connections one device key may have logged in; past it, its oldest is closed.
    pub max_connections_per_device: usize,
    /// Connections one source (IPv4 address or IPv6 /64) may have open without logging in;
    /// more are turned away with `shutting_down` and a `retry_after_secs`.
    pub max_pre_login_per_source: u32,
    /// TLS handshakes running at once; a connection past it is closed before TLS.
    pub max_tls_handshakes: usize,
    /// TLS handshakes running at once from one source (IPv4 address or IPv6 /64).
    pub max_tls_handshakes_per_source: usize,
    /// Seconds a client has to finish the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds from connect to a successful login.
    pub login_timeout_secs: u64,
    /// A connection with no request for this many seconds is closed (clients ping well within).
    pub heartbeat_timeout_secs: u64,
    /// Sustained requests per second per connection.
    pub requests_per_second: f64,
    /// Burst of requests per connection.
    pub request_burst: f64,
    /// Directory searches per minute per connection.
    pub searches_per_minute: f64,
    /// Contact requests one account may send per 24 hours.
    pub contact_requests_per_day: f64,
    /// Accounts one source address may register per hour (each costs an Argon2 hash).
    pub registrations_per_address_per_hour: f64,
    /// Frames queued to one connection before it counts as a slow reader and is dropped.
    pub send_queue_frames: usize,
    /// Seconds one frame may take to write before the connection is dropped.
    pub write_timeout_secs: u64,
    /// Password hashes (Argon2id) computed at once; more logins wait. Each slot owns its 19 MiB
    /// block buffer from start, so the supernode's base memory grows by that much per slot.
    pub password_hash_concurrency: usize,
    /// Password hashes one source (IPv4 address or IPv6 /64) may have running or queued at
    /// once; more are refused `rate_limited`.
    pub password_hashes_per_source: u32,
    /// Successful password logins per account per hour (a burst of a sixth of it); token
    /// logins are not counted.
    pub password_logins_per_hour: f64,
    /// Logins admitted per second, sustained; more are refused `rate_limited` with a
    /// `retry_after_secs` that spreads them out (sized from the measured cost of a token login,
    /// about 1,860/s on one 2-core machine, with room for the rest of the work).
    pub logins_per_second: f64,
    /// Logins admitted at once before the rate applies.
    pub login_burst: f64,
    /// STUN Binding answers per second to one source (IPv4 address or IPv6 /64), sustained.
    pub stun_per_source_per_second: f64,
    /// STUN answers one source may get back to back before its rate applies.
    pub stun_per_source_burst: f64,
    /// STUN answers per second over all sources, sustained: bounds what a spoofed flood can
    /// make the responder send.
    pub stun_per_second: f64,
    /// STUN answers over all sources at once before that rate applies.
    pub stun_burst: f64,
    /// Seconds a stopping supernode takes to move its clients elsewhere, a share at a time, so
    /// that they do not all arrive at the other supernodes at once.
    pub drain_secs: u64,
    /// Messages one account may send in any 60 seconds (to anyone, counted in the database, so
    /// across a cluster); more are refused `rate_limited` with the seconds until one more fits.
    pub messages_per_minute: u32,
    /// Messages one account may send in any 24 hours: its storage budget (at most 4 KiB each,
    /// kept `messages.retention_days`); more are refused `rate_limited`.
    pub messages_per_day: u32,
    /// Messages from one sender that may wait for a recipient's devices (not acknowledged by
    /// any yet); more are refused `mailbox_full`. Per sender, so that a flood from one contact
    /// leaves the recipient's other conversations working.
    pub max_undelivered_per_sender: u32,
    /// Messages from everyone that may wait for one recipient's devices; more are refused
    /// `mailbox_full`.
    pub max_undelivered_per_recipient: u32,
    /// Contact requests that may wait for one user's answer; more are refused `mailbox_full`.
    pub max_pending_requests: u32,
    /// Devices one account may register; a password login from one more is refused
    /// `too_many_devices` (remove one with `peerline devices remove`).
    pub max_devices: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 200_000,
            max_connections_per_user: 32,
            max_connections_per_device: 8,
            max_pre_login_per_source: 32,
            max_tls_handshakes: 512,
            max_tls_handshakes_per_source: 16,
            handshake_timeout_secs: 10,
            login_timeout_secs: 10,
            heartbeat_timeout_secs: 60,
            requests_per_second: 20.0,
            request_burst: 50.0,
            searches_per_minute: 30.0,
            contact_requests_per_day: 100.0,
            registrations_per_address_per_hour: 30.0,
            send_queue_frames: 256,
            write_timeout_secs: 10,
            password_hash_concurrency: 2,
            password_hashes_per_source: 2,
            password_logins_per_hour: 60.0,
            logins_per_second: 1000.0,
            login_burst: 2000.0,
            stun_per_source_per_second: 20.0,
            stun_per_source_burst: 40.0,
            stun_per_second: 20_000.0,
            stun_burst: 20_000.0,
            drain_secs: 10,
            messages_per_minute: 60,
            messages_per_day: 2000,
            max_undelivered_per_sender: 1000,
            max_undelivered_per_recipient: 5000,
            max_pending_requests: 100,
            max_devices: 20,
        }
    }
}

/// The most of anything counted per connection, per account or per source: far above any real
/// use, low enough that a typo (an extra zero or two) is caught.
const COUNT_MAX: u64 = 10_000_000;
/// The longest timeout in seconds: an hour (longer only keeps dead connections around).
const TIMEOUT_MAX: u64 = 3600;

impl Limits {
    /// Adds a problem to `check` for every field out of its range (the ranges that
    /// deploy/supernode.toml documents).
    pub(super) fn check(&self, check: &mut Checker) {
        let c = check;
        c.int("limits.max_connections", self.max_connections, 1, COUNT_MAX);
        c.int("limits.max_connections_per_user", self.max_connections_per_user, 1, 10_000);
        c.int("limits.max_connections_per_device", self.max_connections_per_device, 1, 10_000);
        c.int("limits.max_pre_login_per_source", self.max_pre_login_per_source, 1, COUNT_MAX);
        c.int("limits.max_tls_handshakes", self.max_tls_handshakes, 1, COUNT_MAX);
        let per_source = self.max_tls_handshakes_per_source;
        c.int("limits.max_tls_handshakes_per_source", per_source, 1, COUNT_MAX);
        c.int("limits.handshake_timeout_secs", self.handshake_timeout_secs, 1, 300);
        c.int("limits.login_timeout_secs", self.login_timeout_secs, 1, 300);
        // Below 5 s a client's pings (sent well within) could not keep up over a slow link.
        c.int("limits.heartbeat_timeout_secs", self.heartbeat_timeout_secs, 5, TIMEOUT_MAX);
        c.rate("limits.requests_per_second", self.requests_per_second, 1_000_000.0);
        c.float("limits.request_burst", self.request_burst, 1.0, 1_000_000.0);
        c.rate("limits.searches_per_minute", self.searches_per_minute, 1_000_000.0);
        c.rate("limits.contact_requests_per_day", self.contact_requests_per_day, 1_000_000.0);
        let registrations = self.registrations_per_address_per_hour;
        c.rate("limits.registrations_per_address_per_hour", registrations, 1_000_000.0);
        c.int("limits.send_queue_frames", self.send_queue_frames, 1, 1_000_000);
        c.int("limits.write_timeout_secs", self.write_timeout_secs, 1, 300);
        c.int("limits.password_hash_concurrency", self.password_hash_concurrency, 1, 64);
        c.int("limits.password_hashes_per_source", self.password_hashes_per_source, 1, 10_000);
        let per_hour = self.password_logins_per_hour;
        c.float("limits.password_logins_per_hour", per_hour, 1.0, 1_000_000.0);
        c.rate("limits.logins_per_second", self.logins_per_second, 1_000_000.0);
        c.float("limits.login_burst", self.login_burst, 1.0, 10_000_000.0);
        c.rate("limits.stun_per_source_per_second", self.stun_per_source_per_second, 10_000_000.0);
        c.float("limits.stun_per_source_burst", self.stun_per_source_burst, 1.0, 10_000_000.0);
        c.rate("limits.stun_per_second", self.stun_per_second, 100_000_000.0);
        c.float("limits.stun_burst", self.stun_burst, 1.0, 100_000_000.0);
        c.int("limits.drain_secs", self.drain_secs, 0, 600);
        c.int("limits.messages_per_minute", self.messages_per_minute, 1, COUNT_MAX);
        c.int("limits.messages_per_day", self.messages_per_day, 1, COUNT_MAX);
        let per_sender = self.max_undelivered_per_sender;
        c.int("limits.max_undelivered_per_sender", per_sender, 1, COUNT_MAX);
        let per_recipient = self.max_undelivered_per_recipient;
        c.int("limits.max_undelivered_per_recipient", per_recipient, 1, COUNT_MAX);
        c.int("limits.max_pending_requests", self.max_pending_requests, 1, COUNT_MAX);
        c.int("limits.max_devices", self.max_devices, 1, 10_000);
    }
}
