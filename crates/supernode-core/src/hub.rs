//! The hub: every live connection, every online user, and the presence fan-out between them.
//!
//! Inputs are method calls with `now`; outputs queue up and are taken with [`Hub::poll_output`].
//! Presence is only ever sent between *mutual* contacts (both rows `accepted`); a block or a
//! removal breaks the link, so a blocked user sees the blocker offline. `invisible` is sent as
//! `offline`. Each user's effective presence is remembered so that a change is announced once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use peerline_wire::{DeviceId, EndReason, Event, Presence, Status};

use crate::calls::{CallConfig, Calls};
use crate::cluster::{BusMessage, Route};
use crate::limits::Limits;
use crate::presence::Remote;
use crate::rate::TokenBucket;
use crate::throttle::ThrottleConfig;

/// An account id (as in storage).
pub type UserId = i64;

/// A connection id assigned by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Limits and timers of the hub. Defaults are safe for the internet.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// A connection with no request for this long is closed (heartbeat).
    pub heartbeat_timeout: Duration,
    /// A connection that has not logged in this long after connecting is closed.
    pub login_timeout: Duration,
    /// Sustained requests per second per connection.
    pub requests_per_sec: f64,
    /// Burst of requests per connection.
    pub request_burst: f64,
    /// Searches per minute per connection.
    pub searches_per_minute: f64,
    /// Contact requests per account per 24 hours.
    pub contact_requests_per_day: f64,
    /// Account registrations per source address per hour (each costs an Argon2 hash).
    pub registrations_per_hour: f64,
    /// Logins this supernode admits per second, sustained (admission control: after a mass
    /// reconnect, the clients that do not fit are told when to come back instead of piling up).
    pub logins_per_sec: f64,
    /// Burst of logins admitted at once.
    pub login_burst: f64,
    /// Rate-limit violations tolerated per connection before it is closed.
    pub max_violations: u32,
    /// Connections one account may have logged in here; a login past it closes the account's
    /// oldest connection (the newest wins, so an owner is never shut out by stale ones).
    pub max_connections_per_user: usize,
    /// Connections one device (one key: the CLI's `online`, a call and one-shot commands share
    /// it) may have logged in here; past it, the device's oldest connection is closed.
    pub max_connections_per_device: usize,
    /// Connections one source (IPv4 address or IPv6 /64) may have open and not logged in.
    pub max_pre_login_per_source: u32,
    /// Failed-login policy per account (wrong passwords from unregistered device keys).
    pub login_per_account: ThrottleConfig,
    /// Failed-login policy per registered device of an account.
    pub login_per_device: ThrottleConfig,
    /// Failed-login policy per source (IPv4 address or IPv6 /64), for passwords and for tokens.
    pub login_per_address: ThrottleConfig,
    /// Password hashes (logins, registrations, password changes) one source may have running or
    /// queued at once.
    pub hashes_per_source: u32,
    /// Successful password logins per account per hour (each costs a hash); token logins are
    /// not counted.
    pub password_logins_per_hour: f64,
    /// Call signaling limits and timers.
    pub calls: CallConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            heartbeat_timeout: Duration::from_secs(60),
            login_timeout: Duration::from_secs(10),
            requests_per_sec: 20.0,
            request_burst: 50.0,
            searches_per_minute: 30.0,
            contact_requests_per_day: 100.0,
            registrations_per_hour: 30.0,
            logins_per_sec: 1000.0,
            login_burst: 2000.0,
            max_violations: 100,
            max_connections_per_user: 32,
            max_connections_per_device: 8,
            max_pre_login_per_source: 32,
            login_per_account: ThrottleConfig::per_account(),
            login_per_device: ThrottleConfig::per_device(),
            login_per_address: ThrottleConfig::per_source(),
            hashes_per_source: 2,
            password_logins_per_hour: 60.0,
            calls: CallConfig::default(),
        }
    }
}

/// What the hub asks the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this event to each of these connections (encode once, send many).
    Send {
        /// Recipients.
        conns: Vec<ConnId>,
        /// The event.
        event: Event,
    },
    /// Tell the connection why, then close it. The driver must call [`Hub::disconnect`] once
    /// the connection is gone.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: EndReason,
    },
    /// Register an answered call on the bus, so that a party can take it over on another
    /// supernode if this one dies.
    RegisterCall {
        /// The call.
        call_id: String,
        /// Its parties.
        record: crate::calls::CallRecord,
    },
    /// The call ended: forget its registration.
    UnregisterCall {
        /// The call.
        call_id: String,
    },
    /// Publish this message on the cluster bus (to other supernodes only; nothing comes back).
    Bus {
        /// Where.
        to: Route,
        /// What.
        msg: BusMessage,
    },
    /// Store a missed call for `callee` (and tell its live devices once stored): a call rang
    /// unanswered, was cancelled, or could not ring because the callee was offline or busy.
    MissedCall {
        /// Who missed it.
        callee: UserId,
        /// Who called.
        caller: UserId,
        /// The call.
        call_id: String,
    },
}

/// The order of contact changes, from storage: of two changes of one pair, the later one has
/// the larger version.
pub type LinkVersion = i64;

/// What storage says of a user and a peer: mutual contacts or not, as of which change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The other user.
    pub peer: UserId,
    /// Both rows are `accepted`: presence flows between the two.
    pub mutual: bool,
    /// The change this is as of.
    pub version: LinkVersion,
}

/// What the driver knows about a user at login, from storage.
#[derive(Debug, Clone)]
pub struct OnlineLogin {
    /// Account id.
    pub user_id: UserId,
    /// Canonical username.
    pub username: String,
    /// The device logging in.
    pub device_id: DeviceId,
    /// The stored status.
    pub status: Status,
    /// Every peer the user has a contact row with (or who has one about the user), as read
    /// from storage at login. Changes the hub heard of since, with newer versions, win.
    pub contacts: Vec<Link>,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) login: Option<(UserId, DeviceId)>,
    pub(crate) connected_at: Instant,
    pub(crate) last_activity: Instant,
    pub(crate) requests: TokenBucket,
    pub(crate) searches: TokenBucket,
    pub(crate) violations: u32,
    pub(crate) closing: bool,
    /// Where it comes from, while it is not logged in (counted against its source).
    pub(crate) pre_login_source: Option<crate::throttle::Source>,
}

#[derive(Debug)]
pub(crate) struct OnlineUser {
    pub(crate) username: String,
    pub(crate) status: Status,
    pub(crate) conns: Vec<(ConnId, DeviceId)>,
    /// Per peer: mutual or not, as of which change.
    pub(crate) links: HashMap<UserId, (bool, LinkVersion)>,
    /// The presence and device count here last published to other supernodes.
    pub(crate) published: (Presence, u32),
}

impl OnlineUser {
    pub(crate) fn presence(&self) -> Presence {
        if self.conns.is_empty() { Presence::Offline } else { self.status.into() }
    }

    pub(crate) fn is_mutual(&self, peer: UserId) -> bool {
        self.links.get(&peer).is_some_and(|(mutual, _)| *mutual)
    }

    /// Devices logged in here.
    pub(crate) fn device_count(&self) -> u32 {
        u32::try_from(self.conns.len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn mutual_peers(&self) -> impl Iterator<Item = UserId> + '_ {
        self.links.iter().filter(|(_, (mutual, _))| *mutual).map(|(peer, _)| *peer)
    }

    /// Takes a change of the link to `peer` unless a newer one is known; returns whether it
    /// changed what is known.
    pub(crate) fn take_link(&mut self, peer: UserId, mutual: bool, version: LinkVersion) -> bool {
        match self.links.get(&peer) {
            Some((_, known)) if *known >= version => false,
            Some((was, _)) if *was == mutual => {
                self.links.insert(peer, (mutual, version));
                false
            }
            _ => {
                self.links.insert(peer, (mutual, version));
                true
            }
        }
    }
}

/// A contact change the hub heard of, kept a while for logins whose read of storage may be
/// older.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecentLink {
    pub(crate) a: UserId,
    pub(crate) b: UserId,
    pub(crate) mutual: bool,
    pub(crate) version: LinkVersion,
    pub(crate) at: Instant,
}

/// How long contact changes are kept for logins in progress: longer than a login takes from
/// its read of the contact list to going live.
const RECENT_LINKS_FOR: Duration = Duration::from_secs(60);

/// The supernode's live state. One per supernode process.
#[derive(Debug)]
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) users: HashMap<UserId, OnlineUser>,
    pub(crate) limits: Limits,
    pub(crate) outputs: Vec<Output>,
    next_sweep: Instant,
    pub(crate) recent_links: VecDeque<RecentLink>,
    /// Local users who see each subject (their mutual contacts online here).
    pub(crate) viewers_of: HashMap<UserId, Vec<UserId>>,
    /// What other supernodes reported about subjects with viewers here.
    pub(crate) remote: HashMap<UserId, Remote>,
    /// The effective presence last told to viewers here, per subject (offline: absent).
    pub(crate) announced: HashMap<UserId, Presence>,
    /// The number of the last presence report this supernode sent.
    pub(crate) next_seq: u64,
    pub(crate) calls: Calls,
    /// Connections logged in quietly, per user: not online (see `quiet.rs`).
    pub(crate) quiet: HashMap<UserId, Vec<(ConnId, DeviceId)>>,
}

/// How often timers are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig, now: Instant) -> Self {
        Self {
            limits: Limits::new(&config, now),
            config,
            conns: HashMap::new(),
            users: HashMap::new(),
            outputs: Vec::new(),
            next_sweep: now + SWEEP_INTERVAL,
            recent_links: VecDeque::new(),
            viewers_of: HashMap::new(),
            remote: HashMap::new(),
            announced: HashMap::new(),
            next_seq: 0,
            calls: Calls::default(),
            quiet: HashMap::new(),
        }
    }

    /// Connections that are logged in and not being closed: the only ones events go to.
    pub(crate) fn live_conns(&self, user: &OnlineUser) -> Vec<ConnId> {
        user.conns
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| self.conns.get(c).is_some_and(|conn| !conn.closing))
            .collect()
    }

    /// The configuration in force.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub(crate) fn call_config(&self) -> &CallConfig {
        &self.config.calls
    }

    pub(crate) fn push_output(&mut self, output: Output) {
        self.outputs.push(output);
    }

    /// The user and device a connection is logged in as.
    pub fn login_of(&self, conn: ConnId) -> Option<(UserId, DeviceId)> {
        self.conns.get(&conn).and_then(|c| c.login)
    }

    /// The status a user online here chose (as last heard from any of their devices).
    pub fn status_of(&self, user: UserId) -> Option<Status> {
        self.users.get(&user).map(|u| u.status)
    }

    /// A user's logged-in connections that are not being closed.
    pub fn user_conns(&self, user: UserId) -> Vec<ConnId> {
        self.users.get(&user).map(|u| self.live_conns(u)).unwrap_or_default()
    }

    /// A new connection (TLS done, WebSocket open).
    pub fn connect(&mut self, conn: ConnId, now: Instant) {
        let c = &self.config;
        self.conns.insert(
            conn,
            Conn {
                login: None,
                connected_at: now,
                last_activity: now,
                requests: TokenBucket::new(c.request_burst, c.requests_per_sec, now),
                searches: TokenBucket::new(
                    (c.searches_per_minute / 6.0).max(1.0),
                    c.searches_per_minute / 60.0,
                    now,
                ),
                violations: 0,
                closing: false,
                pre_login_source: None,
            },
        );
    }

    /// Binds a connection to a user and device, and queues for it the presence of each visible
    /// contact in the same step, so that no change of theirs can fall between the snapshot and
    /// the events that follow it. If the user was offline (or had no visible presence), their
    /// contacts are told. Returns `false` if the connection is gone.
    pub fn login(&mut self, conn: ConnId, login: OnlineLogin, now: Instant) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.login = Some((login.user_id, login.device_id));
        c.last_activity = now;
        let source = c.pre_login_source.take();
        self.limits.left_pre_login(source);
        let user_id = login.user_id;
        let first_device = !self.users.contains_key(&user_id);
        let user = self.users.entry(user_id).or_insert_with(|| OnlineUser {
            username: login.username.clone(),
            status: login.status,
            conns: Vec::new(),
            links: HashMap::new(),
            published: (Presence::Offline, 0),
        });
        for link in &login.contacts {
            user.take_link(link.peer, link.mutual, link.version);
        }
        // Changes heard of while the login read storage are newer than what it read.
        for r in self.recent_links.iter().filter(|r| r.a == user_id || r.b == user_id) {
            let peer = if r.a == user_id { r.b } else { r.a };
            user.take_link(peer, r.mutual, r.version);
        }
        user.conns.push((conn, login.device_id));
        self.presence_login(user_id, conn, first_device);
        self.enforce_connection_caps(user_id, login.device_id);
        true
    }

    /// Closes a user's oldest connections past the per-device and per-user caps, so that one
    /// account cannot hold a supernode's connections, nor multiply the events sent under the
    /// hub's lock by its connection count.
    fn enforce_connection_caps(&mut self, user: UserId, device: DeviceId) {
        let Some(u) = self.users.get(&user) else {
            return;
        };
        // Oldest first: connections are pushed in login order.
        let live: Vec<(ConnId, DeviceId)> = u
            .conns
            .iter()
            .copied()
            .filter(|(c, _)| self.conns.get(c).is_some_and(|conn| !conn.closing))
            .collect();
        let of_device: Vec<ConnId> =
            live.iter().filter(|(_, d)| *d == device).map(|(c, _)| *c).collect();
        let mut excess: Vec<ConnId> = of_device
            .iter()
            .take(of_device.len().saturating_sub(self.config.max_connections_per_device))
            .copied()
            .collect();
        let remaining = live.len() - excess.len();
        let over_user = remaining.saturating_sub(self.config.max_connections_per_user);
        let oldest_others: Vec<ConnId> =
            live.iter().map(|(c, _)| *c).filter(|c| !excess.contains(c)).take(over_user).collect();
        excess.extend(oldest_others);
        for conn in excess {
            self.close(conn, EndReason::TooManyConnections);
        }
    }

    /// Removes a connection (closed by either side). Idempotent.
    pub fn disconnect(&mut self, conn: ConnId) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.calls_disconnect(conn);
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.limits.left_pre_login(c.pre_login_source);
        let Some((user_id, _)) = c.login else { return };
        self.forget_quiet(user_id, conn);
        if let Some(user) = self.users.get_mut(&user_id) {
            user.conns.retain(|(id, _)| *id != conn);
            if user.conns.is_empty() {
                self.presence_logout(user_id);
                self.users.remove(&user_id);
            }
        }
    }

    /// Sends an event to every device of a user, here (except one connection: the sender's own)
    /// and on every other supernode holding one.
    pub fn send_to_user(&mut self, user: UserId, event: Event, except: Option<ConnId>) {
        self.outputs.push(Output::Bus {
            to: Route::User(user),
            msg: BusMessage::Deliver { user, event: event.clone() },
        });
        self.deliver_here(user, event, except);
    }

    /// Sends an event to the user's connections here (except one).
    pub(crate) fn deliver_here(&mut self, user: UserId, event: Event, except: Option<ConnId>) {
        let Some(u) = self.users.get(&user) else {
            return;
        };
        let conns: Vec<ConnId> =
            self.live_conns(u).into_iter().filter(|c| Some(*c) != except).collect();
        if !conns.is_empty() {
            self.outputs.push(Output::Send { conns, event });
        }
    }

    /// Whether any connection of this user is logged in.
    pub fn is_online(&self, user: UserId) -> bool {
        self.users.contains_key(&user)
    }

    /// Whether a device has a logged-in connection.
    pub fn is_device_online(&self, user: UserId, device: DeviceId) -> bool {
        self.users.get(&user).is_some_and(|u| u.conns.iter().any(|(_, d)| *d == device))
    }

    /// Closes every connection of one device (device removed), here and elsewhere.
    pub fn close_device(&mut self, user: UserId, device: DeviceId, reason: EndReason) {
        self.close_where(user, reason, |_, d| d == device);
        let msg = BusMessage::Close { user, device: Some(device), reason };
        self.outputs.push(Output::Bus { to: Route::User(user), msg });
    }

    /// Closes every connection of a user except one (password changed), here and elsewhere.
    pub fn close_user_except(&mut self, user: UserId, keep: ConnId, reason: EndReason) {
        self.close_where(user, reason, |c, _| c != keep);
        let msg = BusMessage::Close { user, device: None, reason };
        self.outputs.push(Output::Bus { to: Route::User(user), msg });
    }

    /// Whether the hub has decided to close this connection (further requests are ignored).
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|c| c.closing)
    }

    /// Marks a connection as closing without a goodbye (it cannot be sent: a slow reader).
    /// Returns `true` the first time.
    pub fn mark_closing(&mut self, conn: ConnId) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if !c.closing => {
                c.closing = true;
                true
            }
            _ => false,
        }
    }

    /// Closes one connection with a reason (logout, shutdown, slow reader).
    pub fn close(&mut self, conn: ConnId, reason: EndReason) {
        if let Some(c) = self.conns.get_mut(&conn)
            && !c.closing
        {
            c.closing = true;
            self.outputs.push(Output::Close { conn, reason });
        }
    }

    pub(crate) fn close_where(
        &mut self,
        user: UserId,
        reason: EndReason,
        pick: impl Fn(ConnId, DeviceId) -> bool,
    ) {
        let online = self.users.get(&user).map(|u| u.conns.as_slice()).unwrap_or_default();
        let targets: Vec<ConnId> = online
            .iter()
            .copied()
            .chain(self.quiet_conns(user))
            .filter(|(c, d)| pick(*c, *d))
            .map(|(c, _)| c)
            .collect();
        for conn in targets {
            self.close(conn, reason);
        }
    }

    /// Every connection, in id order (to drain them a share at a time).
    pub fn connection_ids(&self) -> Vec<ConnId> {
        let mut all: Vec<ConnId> = self.conns.keys().copied().collect();
        all.sort();
        all
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&mut self, reason: EndReason) {
        let mut all: Vec<ConnId> = self.conns.keys().copied().collect();
        all.sort();
        for conn in all {
            self.close(conn, reason);
        }
    }

    /// Checks timers: heartbeat expiry and login deadlines. Cheap to call often; does a sweep
    /// at most every half second.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let (hb, lt) = (self.config.heartbeat_timeout, self.config.login_timeout);
        let mut expired: Vec<(ConnId, EndReason)> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.closing)
            .filter_map(|(id, c)| {
                if c.login.is_none() && now.saturating_duration_since(c.connected_at) >= lt {
                    Some((*id, EndReason::LoginTimeout))
                } else if now.saturating_duration_since(c.last_activity) >= hb {
                    Some((*id, EndReason::HeartbeatTimeout))
                } else {
                    None
                }
            })
            .collect();
        expired.sort_by_key(|(id, _)| *id);
        for (conn, reason) in expired {
            self.close(conn, reason);
        }
        self.limits.expire(now);
        while self
            .recent_links
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.at) >= RECENT_LINKS_FOR)
        {
            self.recent_links.pop_front();
        }
        self.calls_timeout(now);
    }

    /// When [`Hub::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() { None } else { Some(self.outputs.remove(0)) }
    }

    /// Takes every queued output at once, in order.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Live connections (logged in or not).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Users with at least one logged-in connection.
    pub fn online_user_count(&self) -> usize {
        self.users.len()
    }
}
