//! Accounts, login and devices: `hello`, `register`, `login`, `logout`, `change_password`,
//! `whoami`, `devices`, `remove_device`, `set_profile`.

use std::time::Instant;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use peerline_store::{NewAccount, TokenLogin};
use peerline_supernode_core::{Link, OnlineLogin};
use peerline_wire::{
    ChannelBinding, DeviceInfo, EndReason, ErrorBody, ErrorCode, Login, PROTOCOL_VERSION, Profile,
    Reply, login_challenge, login_challenge_bound, validate,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::metrics as m;
use crate::session::{Identity, Session, db};
use crate::state::now_ms;

/// How stale a device's `last_seen_at` may get before a token login rewrites it.
const LAST_SEEN_RESOLUTION_MS: i64 = 3_600_000;

/// Longest device name kept.
const MAX_DEVICE_NAME_CHARS: usize = 64;

fn random_hex32() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

/// A password check begun in the hub's limits, ended when dropped: as a failure unless `ok`
/// was set, so that an error, a cancelled request or a closed connection never leaves a hash
/// slot taken or a success unforgiven.
struct PasswordCheck {
    shared: std::sync::Arc<crate::state::Shared>,
    username: String,
    device: Option<[u8; 32]>,
    addr: std::net::IpAddr,
    ok: bool,
}

impl PasswordCheck {
    fn begin(
        session: &Session,
        username: &str,
        device: Option<[u8; 32]>,
    ) -> Result<PasswordCheck, ErrorBody> {
        let addr = session.peer.ip();
        session.shared.with_hub(|h| h.begin_password(username, device, addr, Instant::now()))?;
        Ok(PasswordCheck {
            shared: session.shared.clone(),
            username: username.to_owned(),
            device,
            addr,
            ok: false,
        })
    }
}

impl Drop for PasswordCheck {
    fn drop(&mut self) {
        let (username, device, addr, ok) = (&self.username, self.device, self.addr, self.ok);
        self.shared.with_hub(|h| h.end_password(username, device, addr, ok, Instant::now()));
    }
}

impl Session {
    pub(crate) fn hello(&mut self, version: u32) -> Result<Reply, ErrorBody> {
        if version != PROTOCOL_VERSION {
            return Err(ErrorBody::with_message(
                ErrorCode::UnsupportedVersion,
                format!("this supernode speaks protocol version {PROTOCOL_VERSION}, not {version}"),
            ));
        }
        let nonce = random_hex32();
        self.nonce = Some(nonce.clone());
        Ok(Reply::Hello {
            version: PROTOCOL_VERSION,
            server: concat!("peerline-supernode/", env!("CARGO_PKG_VERSION")).into(),
            nonce,
            heartbeat_timeout_secs: self.shared.config.limits.heartbeat_timeout_secs,
            stun_port: self.shared.stun_port,
        })
    }

    pub(crate) async fn register(
        &mut self,
        username: String,
        display_name: Option<String>,
        password: String,
    ) -> Result<Reply, ErrorBody> {
        if self.identity.is_some() {
            return Err(ErrorCode::AlreadyAuthenticated.into());
        }
        let username = validate::username(&username)?;
        let display_name = match display_name.as_deref() {
            Some(d) => validate::display_name(d)?,
            None => username.clone(),
        };
        validate::password(&password)?;
        // Registration costs a hash: a per-address quota keeps it bounded.
        let ip = self.peer.ip();
        self.shared.with_hub(|h| h.admit_registration(ip, Instant::now()))?;
        if db(self.shared.store.account_by_username(&username).await)?.is_some() {
            return Err(ErrorCode::UsernameTaken.into());
        }
        let gate = self.hash_gate();
        let password_hash = self.shared.passwords.hash(password, &gate).await?;
        let account = NewAccount { username, display_name, password_hash };
        let created = db(self.shared.store.create_account(account, now_ms()).await)?;
        metrics::counter!(m::REGISTRATIONS).increment(1);
        tracing::info!(user = %created.username, "account registered");
        Ok(Reply::Registered { username: created.username })
    }

    pub(crate) async fn login(&mut self, login: Login) -> Result<Reply, ErrorBody> {
        if self.identity.is_some() {
            return Err(ErrorCode::AlreadyAuthenticated.into());
        }
        let method = if login.token.is_some() { "token" } else { "password" };
        let started = Instant::now();
        let result = self.login_inner(login).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.code == ErrorCode::LoginThrottled => "throttled",
            Err(_) => "fail",
        };
        metrics::counter!(m::LOGINS, "method" => method, "result" => outcome).increment(1);
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!(m::LOGIN_SECONDS, "method" => method, "result" => outcome)
            .record(seconds);
        match &result {
            // The username is checked by then; a refused one is the client's text: not logged.
            Ok(Reply::LoggedIn { username, .. }) => {
                tracing::info!(user = %username, method, "logged in")
            }
            _ => tracing::info!(method, result = outcome, "login refused"),
        }
        result
    }

    async fn login_inner(&mut self, login: Login) -> Result<Reply, ErrorBody> {
        let store = self.shared.store.clone();
        let ip = self.peer.ip();
        // An impossible username cannot exist; saying so reveals nothing.
        let username =
            validate::username(&login.username).map_err(|_| ErrorCode::InvalidCredentials)?;

        // The device proves it holds its key by signing this connection's nonce. This comes
        // first (it is cheap): which throttle applies depends on whether the key is one of the
        // account's registered devices, and only its holder can sign with it.
        let nonce = self.nonce.clone().unwrap_or_default();
        let key_bytes = parse_hex::<32>(&login.device.public_key).ok_or_else(|| {
            ErrorBody::with_message(
                ErrorCode::BadRequest,
                "device public_key must be 64 hex characters",
            )
        })?;
        let sig_bytes = parse_hex::<64>(&login.device.signature).ok_or_else(|| {
            ErrorBody::with_message(
                ErrorCode::BadRequest,
                "device signature must be 128 hex characters",
            )
        })?;
        let key =
            VerifyingKey::from_bytes(&key_bytes).map_err(|_| ErrorCode::InvalidDeviceSignature)?;
        // A bound signature covers this connection's TLS exporter too: one relayed by a man in
        // the middle (who sees another exporter on each side) does not verify here.
        let challenge = match (login.device.channel_binding, &self.tls_exporter) {
            (None, _) => login_challenge(&nonce),
            (Some(ChannelBinding::TlsExporter), Some(exporter)) => {
                login_challenge_bound(&nonce, exporter)
            }
            (Some(ChannelBinding::TlsExporter), None) => {
                return Err(ErrorBody::with_message(
                    ErrorCode::BadRequest,
                    "channel_binding tls_exporter needs a TLS connection to the supernode",
                ));
            }
        };
        key.verify(&challenge, &Signature::from_bytes(&sig_bytes))
            .map_err(|_| ErrorCode::InvalidDeviceSignature)?;
        let device_name: String = login
            .device
            .name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_DEVICE_NAME_CHARS)
            .collect();

        let now = now_ms();
        // A token login finds its device; a password login registers or refreshes it.
        let (account, token, hash, fresh_token, known_device) = match (login.password, login.token)
        {
            (Some(password), None) => {
                let account = db(store.account_by_username(&username).await)?;
                let registered = match &account {
                    Some(a) => db(store.devices(a.id).await)?
                        .iter()
                        .any(|d| d.public_key == key_bytes)
                        .then_some(key_bytes),
                    None => None,
                };
                let mut check = PasswordCheck::begin(self, &username, registered)?;
                let stored = account.as_ref().map(|a| a.password_hash.clone());
                // Unknown users are checked against a dummy hash: same answer, same time.
                let gate = self.hash_gate();
                if !self.shared.passwords.verify(password, stored, &gate).await? {
                    return Err(ErrorCode::InvalidCredentials.into());
                }
                let account = account.ok_or(ErrorCode::InvalidCredentials)?;
                check.ok = true;
                drop(check);
                let token = random_hex32();
                let hash = token_hash(&token);
                (account, token, hash, true, None)
            }
            (None, Some(token)) => {
                // Only bad tokens from this same source can hold a token login: an account's
                // password failures never do.
                self.shared.with_hub(|h| h.check_token(ip, Instant::now()))?;
                let bad_token = || {
                    self.shared.with_hub(|h| h.token_failed(ip, Instant::now()));
                    ErrorBody::new(ErrorCode::InvalidToken)
                };
                let hash = token_hash(&token);
                // One read for the session, its account and its device: every round trip to
                // the store is paid again by every reconnecting client.
                let found = db(store.token_login(&hash).await)?;
                let Some(TokenLogin { account, device, .. }) = found.filter(|t| {
                    t.session.expires_at > now
                        && t.account.username == username
                        // A token only works with the device key it was issued to.
                        && t.device.public_key == key_bytes
                }) else {
                    return Err(bad_token());
                };
                (account, token, hash, false, Some(device))
            }
            _ => {
                return Err(ErrorBody::with_message(
                    ErrorCode::BadRequest,
                    "login needs exactly one of password and token",
                ));
            }
        };
        self.admit_device(account.id, &key_bytes, known_device.is_some()).await?;
        // Reconnects must stay cheap: a known device's row (and its fsync) is only rewritten when
        // its name changed or its last login is over an hour old.
        let device = match known_device {
            Some(d) if d.name == device_name && now - d.last_seen_at < LAST_SEEN_RESOLUTION_MS => d,
            _ => db(store.upsert_device(account.id, &key_bytes, &device_name, now).await)?,
        };
        if fresh_token {
            let lifetime = i64::from(self.shared.config.sessions.token_lifetime_days) * 86_400_000;
            db(store.create_session(&hash, account.id, device.id, now + lifetime).await)?;
        }
        if login.quiet {
            // A one-shot command: logged in, but not online (see supernode-core's quiet.rs).
            if !self.shared.login_quiet(self.conn, account.id, device.id, Instant::now()) {
                return Err(ErrorCode::ShuttingDown.into());
            }
        } else {
            // Watch first, read second: a contact change published after the read reaches this
            // supernode, and the hub applies whichever is newer.
            if let Err(e) = self.shared.bus.watch(account.id).await {
                tracing::warn!(error = %e, "the cluster bus refused a watch");
                let mut body = ErrorBody::new(ErrorCode::Unavailable);
                body.retry_after_secs = Some(1);
                return Err(body);
            }
            let contacts = match store.contact_links(account.id).await {
                Ok(contacts) => contacts,
                Err(e) => {
                    let _ = self.shared.bus.unwatch(account.id).await;
                    return db(Err(e));
                }
            };
            let online = OnlineLogin {
                user_id: account.id,
                username: account.username.clone(),
                device_id: device.id,
                status: account.status,
                contacts: contacts
                    .into_iter()
                    .map(|l| Link { peer: l.peer, mutual: l.mutual, version: l.version })
                    .collect(),
            };
            // Live and given its presence snapshot in one step; events to it wait until the reply
            // went out.
            if !self.shared.login(self.conn, online, Instant::now()) {
                let _ = self.shared.bus.unwatch(account.id).await;
                return Err(ErrorCode::ShuttingDown.into());
            }
        }
        self.identity = Some(Identity {
            user_id: account.id,
            username: account.username.clone(),
            device_id: device.id,
            device_key: hex::encode(device.public_key.as_slice()),
            token_hash: hash,
        });
        self.after.release = true;
        self.after.push_undelivered = !login.quiet;
        Ok(Reply::LoggedIn {
            username: account.username,
            display_name: account.display_name,
            device_id: device.id,
            token,
            status: account.status,
            // Where this token also works: the client's host cache for failover.
            supernodes: shuffled(&self.shared.config.cluster.supernodes),
        })
    }

    pub(crate) async fn logout(&mut self) -> Result<Reply, ErrorBody> {
        let me = self.me()?;
        db(self.shared.store.delete_session(&me.token_hash).await)?;
        Ok(Reply::Done)
    }

    pub(crate) async fn change_password(
        &mut self,
        old_password: String,
        new_password: String,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        validate::password(&new_password)?;
        let store = self.shared.store.clone();
        // The logged-in device is registered: its mistakes do not hold anyone else.
        let device = parse_hex::<32>(&me.device_key);
        let mut check = PasswordCheck::begin(self, &me.username, device)?;
        let account = db(store.account_by_id(me.user_id).await)?.ok_or(ErrorCode::Internal)?;
        let gate = self.hash_gate();
        if !self.shared.passwords.verify(old_password, Some(account.password_hash), &gate).await? {
            return Err(ErrorCode::InvalidCredentials.into());
        }
        check.ok = true;
        drop(check);
        let hash = self.shared.passwords.hash(new_password, &gate).await?;
        db(store.set_password_hash(me.user_id, &hash).await)?;
        db(store.delete_sessions_except(me.user_id, Some(&me.token_hash)).await)?;
        let conn = self.conn;
        self.shared.with_hub(|h| h.close_user_except(me.user_id, conn, EndReason::PasswordChanged));
        Ok(Reply::Done)
    }

    pub(crate) async fn whoami(&mut self) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let account =
            db(self.shared.store.account_by_id(me.user_id).await)?.ok_or(ErrorCode::Internal)?;
        Ok(Reply::Me(Profile {
            username: account.username,
            display_name: account.display_name,
            device_id: me.device_id,
            status: account.status,
            discoverable: account.discoverable,
        }))
    }

    pub(crate) async fn devices(&mut self) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let devices = db(self.shared.store.devices(me.user_id).await)?;
        let devices = self.shared.with_hub(|h| {
            devices
                .into_iter()
                .map(|d| DeviceInfo {
                    online: h.is_device_online(me.user_id, d.id),
                    current: d.id == me.device_id,
                    id: d.id,
                    name: d.name,
                    public_key: hex::encode(d.public_key),
                    created_at: d.created_at,
                    last_seen_at: d.last_seen_at,
                })
                .collect()
        });
        Ok(Reply::Devices { devices })
    }

    pub(crate) async fn remove_device(&mut self, device_id: i64) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        if !db(self.shared.store.remove_device(me.user_id, device_id).await)? {
            return Err(ErrorCode::NoSuchDevice.into());
        }
        self.shared.with_hub(|h| h.close_device(me.user_id, device_id, EndReason::DeviceRemoved));
        Ok(Reply::Done)
    }

    pub(crate) async fn set_profile(
        &mut self,
        display_name: Option<String>,
        discoverable: Option<bool>,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let display_name = display_name.as_deref().map(validate::display_name).transpose()?;
        db(self.shared.store.set_profile(me.user_id, display_name.as_deref(), discoverable).await)?;
        Ok(Reply::Done)
    }
}

/// The network's supernodes in a random order for each login: clients fail over to the next one
/// in their list, so the users of a supernode that dies spread over the survivors instead of all
/// going to the same one.
fn shuffled(urls: &[String]) -> Vec<String> {
    use rand::seq::SliceRandom;
    let mut urls = urls.to_vec();
    urls.shuffle(&mut rand::thread_rng());
    urls
}
