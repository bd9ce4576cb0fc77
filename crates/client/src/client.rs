//! A logged-in (or logging-in) user on a network of supernodes: the connection to one of them,
//! plus the home directory that holds the device key and the network's host cache, pinned
//! certificate and saved session token.
//!
//! Logins are built and judged by the sans-IO handshake of `peerline-client-core`
//! ([`peerline_client_core::LoginHandshake`]); this module supplies the device key, the saved
//! token and the network round trip, and keeps the home directory in step with the outcome.
//! Where to connect, first and after a loss, is decided by the sans-IO
//! [`peerline_client_core::Failover`]; `reconnect` drives it.

use std::path::PathBuf;
use std::sync::Arc;

use peerline_client_core::{
    Credential, Failover, FailoverConfig, LoggedIn, LoginOutcome, MAX_HOSTS,
};
use peerline_wire::{ChatMessage, Contact, Event, MessageId, Reply, Request};
use tracing::debug;

use crate::connection::{Connection, Endpoint, handshake_error, server_answer};
use crate::error::ClientError;
use crate::home::{Home, SavedSession};
use crate::reconnect::{self, Opened, jitter, now};
use crate::tls::{Trust, client_config};

/// How many supernodes a command tries before it gives up (the first at once, the others after
/// full-jitter delays of at most 0.5, 1 and 2 s): a person waits for the answer.
const FIRST_CONNECT_ATTEMPTS: usize = 4;

/// The protocol's `inbox` limit when a request gives none.
const DEFAULT_INBOX_LIMIT: u32 = 100;

/// The protocol's `history` limit when a request gives none.
const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// How to reach and trust a network of supernodes.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `wss://host:port` of a supernode. Several, separated by commas, are supernodes of one
    /// network, tried in this order before the rest of the network's host cache.
    pub url: String,
    /// Verify against this CA file instead of pinning on first use.
    pub ca_file: Option<PathBuf>,
    /// Device name shown in `devices`.
    pub device_name: String,
}

impl ConnectOptions {
    /// The URLs in [`ConnectOptions::url`], in order.
    pub fn urls(&self) -> Vec<String> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
    }
}

/// A connection with its home directory.
pub struct Client {
    pub(crate) conn: Connection,
    pub(crate) home: Home,
    /// The URLs the user gave, canonical: the key of the network in the home.
    pub(crate) given: Vec<String>,
    /// The supernode this connection goes to, canonical.
    pub(crate) url: String,
    /// Set when this connection pinned a new certificate on first use: its fingerprint, which
    /// nobody has compared yet (tell the user; ask before sending a password). Not set when the
    /// pin is the fingerprint given to [`Client::connect_expecting`].
    pub newly_pinned: Option<String>,
    pub(crate) device_name: String,
    pub(crate) username: Option<String>,
    /// A CA file to verify every supernode against, or `None` to pin on first use.
    pub(crate) ca_file: Option<PathBuf>,
    /// The certificate fingerprint the user said every supernode must present, if any: it
    /// holds for reconnects too, whatever happens to the pin in the home meanwhile.
    pub(crate) expected_pin: Option<[u8; 32]>,
    /// How the supernode was verified; `turns:` relays are verified the same way.
    pub(crate) trust: Trust,
    /// Where to connect next.
    pub(crate) failover: Failover,
    /// Log in without appearing online (see [`Client::set_quiet`]).
    pub(crate) quiet: bool,
}

impl Client {
    /// Connects to a supernode of the network and says hello: the URLs given first, then the
    /// rest of the network's host cache, up to four attempts. With no CA file, the certificate
    /// is pinned for the whole network on first use and must match the pin afterwards; a
    /// supernode presenting another certificate stops the attempt with
    /// [`ClientError::CertificateChanged`].
    pub async fn connect(options: &ConnectOptions, home: Home) -> Result<Self, ClientError> {
        Self::connect_expecting(options, None, home).await
    }

    /// [`Client::connect`], but when `expected` is given, only to a supernode presenting the
    /// certificate with that SHA-256 fingerprint (one the user got from the operator), this time
    /// and at every reconnect. A network without a pin is pinned to it once a supernode presented
    /// it, and [`Client::newly_pinned`] stays `None`: nothing is trusted on first use.
    ///
    /// Refused before anything is dialed ([`ClientError::TlsSetup`]): a network pinned to
    /// another certificate ([`TlsSetupError::PinConflict`]: run `peerline trust --forget` if
    /// the certificate really changed), a CA file as well ([`TlsSetupError::FingerprintWithCa`]),
    /// a plain `ws://` supernode. A supernode presenting another certificate stops the attempt
    /// with [`ClientError::CertificateChanged`], its `pinned` being `expected`.
    ///
    /// [`TlsSetupError::PinConflict`]: crate::tls::TlsSetupError::PinConflict
    /// [`TlsSetupError::FingerprintWithCa`]: crate::tls::TlsSetupError::FingerprintWithCa
    pub async fn connect_expecting(
        options: &ConnectOptions,
        expected: Option<[u8; 32]>,
        home: Home,
    ) -> Result<Self, ClientError> {
        let mut given = Vec::new();
        for raw in options.urls() {
            given.push(Endpoint::parse(&raw)?.canonical_url());
        }
        if given.is_empty() {
            return Err(ClientError::BadUrl {
                url: options.url.clone(),
                reason: "no supernode URL".into(),
            });
        }
        // A contradiction in the trust settings is the same on every supernode: say it at once.
        reconnect::network_trust(&home, &given, options.ca_file.as_deref(), expected)?;
        let mut network = home.network(&given)?;
        network.hosts.give(&given);
        let mut failover = Failover::new(network.hosts.hosts(), FailoverConfig::default());
        let mut first_error = None;
        for _ in 0..FIRST_CONNECT_ATTEMPTS.min(failover.hosts().len()) {
            let Some(attempt) = failover.plan(now(), jitter()) else { break };
            tokio::time::sleep_until(tokio::time::Instant::from_std(attempt.at)).await;
            failover.started();
            let ca_file = options.ca_file.as_deref();
            match reconnect::open(&home, &given, &attempt.host, ca_file, expected).await {
                Ok(Opened { conn, trust, newly_pinned }) => {
                    failover.connected(now());
                    return Ok(Self {
                        conn,
                        home,
                        given,
                        url: attempt.host,
                        newly_pinned,
                        device_name: options.device_name.clone(),
                        username: None,
                        quiet: false,
                        ca_file: options.ca_file.clone(),
                        expected_pin: expected,
                        trust,
                        failover,
                    });
                }
                // Possibly an attacker: the user must hear of it, not be quietly moved on.
                Err(e @ ClientError::CertificateChanged { .. }) => return Err(e),
                Err(e) => {
                    debug!(supernode = %attempt.host, error = %e, "cannot connect");
                    reconnect::judge(&mut failover, &e);
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(ClientError::Closed(None)))
    }

    /// The URL of the supernode this connection goes to.
    pub fn supernode_url(&self) -> &str {
        &self.url
    }

    /// The supernodes of this client's network, in the order failover tries them.
    pub fn supernodes(&self) -> &[String] {
        self.failover.hosts()
    }

    /// The URLs that find this client's network in the home: the given ones, then the current.
    pub(crate) fn network_key(&self) -> Vec<String> {
        self.given.iter().chain([&self.url]).cloned().collect()
    }

    /// The supernode's host (name or IP literal) and its STUN port, for gathering
    /// server-reflexive candidates.
    pub fn stun_server(&self) -> Option<(String, u16)> {
        let endpoint = Endpoint::parse(&self.url).ok()?;
        Some((endpoint.host, self.conn.stun_port()?))
    }

    /// The supernode's host and port.
    pub fn supernode_host_port(&self) -> Option<(String, u16)> {
        Endpoint::parse(&self.url).ok().map(|e| (e.host, e.port))
    }

    /// TLS settings for `turns:` relays: the same trust as the supernode's connection. With a
    /// pinned (self-signed) supernode certificate the relay must present that same certificate;
    /// with a CA file, a certificate from that CA for the relay's name.
    /// `None` when there is nothing to verify against (a plain `ws://` test supernode): then
    /// `turns:` relays are not used.
    pub fn relay_tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, ClientError> {
        if self.trust == (Trust::Pin { expected: None }) {
            return Ok(None);
        }
        let (config, _) = client_config(&self.trust)?;
        Ok(Some(config))
    }

    /// This device's signing key.
    pub fn device_key(&self) -> Result<ed25519_dalek::SigningKey, ClientError> {
        Ok(self.home.device_key()?)
    }

    /// The home directory.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The logged-in username, once logged in.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The logged-in username, or [`ClientError::NotLoggedIn`] naming this supernode.
    pub fn logged_in_username(&self) -> Result<String, ClientError> {
        self.username
            .clone()
            .ok_or_else(|| ClientError::NotLoggedIn { url: self.url.clone(), rejected: None })
    }

    /// Sends any request.
    pub async fn request(&self, request: Request) -> Result<Reply, ClientError> {
        self.conn.request(request).await
    }

    /// Sends a request that answers `done`.
    pub async fn done(&self, request: Request) -> Result<(), ClientError> {
        match self.request(request).await? {
            Reply::Done => Ok(()),
            other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// The next pushed event; `None` when the connection closed.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.conn.next_event().await
    }

    /// An event already received, if any.
    pub fn try_event(&mut self) -> Option<Event> {
        self.conn.try_event()
    }

    /// Sends one `login` signed by this device's key over this connection's nonce; a refusal
    /// is an outcome, transport trouble and replies of the wrong kind are errors.
    async fn attempt_login(
        &self,
        username: &str,
        credential: Credential,
    ) -> Result<LoginOutcome, ClientError> {
        let key = self.home.device_key()?;
        let attempt = self
            .conn
            .server_hello()
            .login(username, credential, &key, self.device_name.as_str())
            .quiet(self.quiet);
        let answer = server_answer(self.request(attempt.request()).await)?;
        attempt.handle_answer(answer).map_err(handshake_error)
    }

    /// Creates an account (does not log in).
    pub async fn register(
        &self,
        username: &str,
        display_name: Option<&str>,
        password: &str,
    ) -> Result<String, ClientError> {
        let request = Request::Register {
            username: username.to_owned(),
            display_name: display_name.map(str::to_owned),
            password: password.to_owned(),
        };
        match self.request(request).await? {
            Reply::Registered { username } => Ok(username),
            other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// Makes later logins quiet (or not): for a one-shot command, which does a few requests and
    /// leaves. Contacts see no presence change and nothing is pushed to this connection:
    /// messages and missed calls wait for a device that goes online, and calls do not ring it.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// Logs in with a password and saves the session token for password-free reconnects.
    pub async fn login_with_password(
        &mut self,
        username: &str,
        password: &str,
    ) -> Result<Reply, ClientError> {
        match self.attempt_login(username, Credential::Password(password.to_owned())).await? {
            LoginOutcome::LoggedIn(logged_in) => self.remember(logged_in),
            LoginOutcome::ForgetToken(body) | LoginOutcome::Failed(body) => {
                Err(ClientError::Server(body))
            }
        }
    }

    /// Logs in with the session saved for the network in the home directory (no password, no
    /// Argon2 on the supernode). A rejected token is forgotten.
    pub async fn login_saved(&mut self) -> Result<Reply, ClientError> {
        let saved =
            self.home.network(&self.network_key())?.session.ok_or_else(|| {
                ClientError::NotLoggedIn { url: self.url.clone(), rejected: None }
            })?;
        match self.attempt_login(&saved.username, Credential::Token(saved.token)).await? {
            LoginOutcome::LoggedIn(logged_in) => self.remember(logged_in),
            LoginOutcome::ForgetToken(_) => {
                self.home.update_network(&self.network_key(), |n| n.session = None)?;
                Err(ClientError::NotLoggedIn {
                    url: self.url.clone(),
                    rejected: Some(saved.username),
                })
            }
            LoginOutcome::Failed(body) => Err(ClientError::Server(body)),
        }
    }

    /// Saves the session for password-free reconnects and the network's list of supernodes for
    /// failover, and returns the `logged_in` reply.
    fn remember(&mut self, logged_in: LoggedIn) -> Result<Reply, ClientError> {
        // The list comes from a supernode we verified, but it is still outside input: only
        // URLs a client may dial, and no more than the cache holds.
        let learned: Vec<String> = logged_in
            .supernodes
            .iter()
            .filter_map(|u| Endpoint::parse(u).ok())
            .map(|e| e.canonical_url())
            .take(MAX_HOSTS)
            .collect();
        let session = SavedSession {
            username: logged_in.username.clone(),
            token: logged_in.token.clone(),
            device_id: logged_in.device_id,
        };
        let given = self.given.clone();
        let saved = self.home.update_network(&self.network_key(), |n| {
            n.hosts.give(&given);
            n.hosts.learn(&learned);
            n.session = Some(session);
        })?;
        self.failover.set_hosts(saved.hosts.hosts());
        self.username = Some(logged_in.username.clone());
        Ok(logged_in.into())
    }

    /// Logs out: the supernode revokes the token and the saved session is forgotten.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let result = self.done(Request::Logout).await;
        self.home.clear_session(&self.url)?;
        result
    }

    /// The whole contact list, asked for a page (a frame) at a time.
    pub async fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        let mut all: Vec<Contact> = Vec::new();
        loop {
            let after = all.last().map(|c| c.username.clone());
            let (page, more) =
                match self.request(Request::Contacts { after: after.clone() }).await? {
                    Reply::Contacts { contacts, more } => (contacts, more),
                    other => return Err(ClientError::UnexpectedReply(format!("{other:?}"))),
                };
            // Each page must move on past the last: a supernode that repeats itself ends the
            // list rather than the client looping.
            let moves_on =
                page.first().is_some_and(|c| after.as_ref().is_none_or(|a| c.username > *a));
            all.extend(page);
            if !more || !moves_on {
                return Ok(all);
            }
        }
    }

    /// Sends an instant message; returns it as stored.
    pub async fn send_message(&self, to: &str, text: &str) -> Result<ChatMessage, ClientError> {
        match self
            .request(Request::SendMessage { to: to.to_owned(), text: text.to_owned() })
            .await?
        {
            Reply::MessageSent { message } => Ok(message),
            other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// A list of messages (`inbox`, `history`), oldest first: all `limit` of them, asked for a
    /// page (a frame) at a time while the supernode says there is `more`.
    pub async fn messages(&self, request: Request) -> Result<Vec<ChatMessage>, ClientError> {
        match request {
            Request::Inbox { limit, after } => self.inbox_pages(limit, after).await,
            Request::History { with, limit, before } => {
                self.history_pages(with, limit, before).await
            }
            other => Ok(self.message_page(other).await?.0),
        }
    }

    /// One `messages` reply: the messages and whether more were left out.
    async fn message_page(
        &self,
        request: Request,
    ) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        match self.request(request).await? {
            Reply::Messages { messages, more } => Ok((messages, more)),
            other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// `inbox` pages forwards: each asks for the rest of `limit` after the last id so far.
    async fn inbox_pages(
        &self,
        limit: Option<u32>,
        mut after: Option<MessageId>,
    ) -> Result<Vec<ChatMessage>, ClientError> {
        let mut all = Vec::new();
        let mut left = limit.unwrap_or(DEFAULT_INBOX_LIMIT);
        loop {
            let request = Request::Inbox { limit: Some(left), after };
            let (page, more) = self.message_page(request).await?;
            // Ids must grow, or the supernode is repeating itself: stop rather than loop.
            let moves_on = page.first().is_some_and(|m| after.is_none_or(|a| m.id > a));
            after = page.last().map(|m| m.id).or(after);
            left = left.saturating_sub(u32::try_from(page.len()).unwrap_or(u32::MAX));
            all.extend(page);
            if !more || !moves_on || left == 0 {
                return Ok(all);
            }
        }
    }

    /// `history` pages backwards: each asks for the rest of `limit` before the oldest id so
    /// far, and goes in front of what came before.
    async fn history_pages(
        &self,
        with: String,
        limit: Option<u32>,
        mut before: Option<MessageId>,
    ) -> Result<Vec<ChatMessage>, ClientError> {
        let mut all: Vec<ChatMessage> = Vec::new();
        let mut left = limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
        loop {
            let request = Request::History { with: with.clone(), limit: Some(left), before };
            let (mut page, more) = self.message_page(request).await?;
            // Ids must shrink, or the supernode is repeating itself: stop rather than loop.
            let moves_on = page.last().is_some_and(|m| before.is_none_or(|b| m.id < b));
            before = page.first().map(|m| m.id).or(before);
            left = left.saturating_sub(u32::try_from(page.len()).unwrap_or(u32::MAX));
            page.append(&mut all);
            all = page;
            if !more || !moves_on || left == 0 {
                return Ok(all);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use peerline_wire::{
        ClientFrame, ErrorCode, Login, PROTOCOL_VERSION, ServerFrame, Status, login_challenge,
    };

    use super::*;
    use crate::connection::scripted;

    const URL: &str = "wss://127.0.0.1:7443";
    const NONCE: &str = "0badc0de";

    /// A supernode that greets with [`NONCE`], accepts the password `right` and the token
    /// `good` (issuing `fresh` for a password), and refuses anything else as the real one does.
    fn supernode(frame: &ClientFrame) -> ServerFrame {
        let id = frame.id;
        let result = match &frame.request {
            Request::Hello { .. } => Reply::Hello {
                version: PROTOCOL_VERSION,
                server: "test".into(),
                nonce: NONCE.into(),
                heartbeat_timeout_secs: 60,
                stun_port: None,
            },
            Request::Login(Login { username, password, token, .. }) => {
                let issued = match (password.as_deref(), token.as_deref()) {
                    (Some("right"), None) => "fresh",
                    (None, Some("good")) => "good",
                    (Some(_), None) => {
                        return ServerFrame::Error {
                            id: Some(id),
                            error: ErrorCode::InvalidCredentials.into(),
                        };
                    }
                    _ => {
                        return ServerFrame::Error {
                            id: Some(id),
                            error: ErrorCode::InvalidToken.into(),
                        };
                    }
                };
                Reply::LoggedIn {
                    username: username.clone(),
                    display_name: username.clone(),
                    device_id: 3,
                    token: issued.into(),
                    status: Status::Online,
                    supernodes: vec![
                        URL.into(),
                        "wss://sn2.example:7443/v1/ws".into(),
                        "http://not-a-supernode".into(),
                        "ws://192.0.2.1:80".into(),
                    ],
                }
            }
            _ => Reply::Done,
        };
        ServerFrame::Ok { id, result }
    }

    /// A client of [`URL`] over `conn`, with its home in `home`, not logged in.
    fn on(conn: Connection, home: &std::path::Path) -> Client {
        Client {
            conn,
            home: Home::open(home).unwrap(),
            given: vec![URL.into()],
            url: URL.into(),
            newly_pinned: None,
            device_name: "test device".into(),
            username: None,
            ca_file: None,
            expected_pin: None,
            trust: Trust::Pin { expected: None },
            failover: Failover::new(vec![URL.into()], FailoverConfig::default()),
            quiet: false,
        }
    }

    async fn client(home: &std::path::Path) -> (Client, tokio::task::JoinHandle<Vec<ClientFrame>>) {
        let (conn, received) = scripted::connect(supernode).await;
        (on(conn.unwrap(), home), received)
    }

    /// A client on a scripted supernode that answers `hello` and then as `answer` says.
    async fn client_answering(
        home: &std::path::Path,
        mut answer: impl FnMut(&Request) -> Reply + Send + 'static,
    ) -> (Client, tokio::task::JoinHandle<Vec<ClientFrame>>) {
        let (conn, received) = scripted::connect(move |frame| match &frame.request {
            Request::Hello { .. } => supernode(frame),
            request => ServerFrame::Ok { id: frame.id, result: answer(request) },
        })
        .await;
        (on(conn.unwrap(), home), received)
    }

    fn message(id: i64) -> ChatMessage {
        ChatMessage {
            id,
            from: "bob".into(),
            to: "alice".into(),
            text: format!("message {id}"),
            sent_at: id,
            delivered_at: None,
            read_at: None,
        }
    }

    fn contact(name: &str) -> Contact {
        Contact {
            username: name.into(),
            display_name: name.into(),
            state: peerline_wire::ContactState::Incoming,
            presence: peerline_wire::Presence::Offline,
            message: None,
        }
    }

    /// A supernode whose frames hold two contacts or three messages: it pages as the real one
    /// does (`more` when it stopped short), over five contacts and messages 1 to 9.
    fn paging_supernode(request: &Request) -> Reply {
        let names = ["amy", "bob", "cat", "dan", "eve"];
        let ids = 1..=9_i64;
        match request {
            Request::Contacts { after } => {
                let rest: Vec<_> =
                    names.iter().filter(|n| after.as_deref().is_none_or(|a| **n > a)).collect();
                let page = rest.iter().take(2).map(|n| contact(n)).collect();
                Reply::Contacts { contacts: page, more: rest.len() > 2 }
            }
            Request::Inbox { limit, after } => {
                let rest: Vec<_> = ids.filter(|i| after.is_none_or(|a| *i > a)).collect();
                let wanted = rest.len().min(limit.unwrap_or(100) as usize);
                let page: Vec<_> = rest.iter().take(wanted.min(3)).map(|i| message(*i)).collect();
                Reply::Messages { more: page.len() < wanted, messages: page }
            }
            Request::History { limit, before, .. } => {
                let older: Vec<_> = ids.filter(|i| before.is_none_or(|b| *i < b)).collect();
                let wanted = older.len().min(limit.unwrap_or(50) as usize);
                let page: Vec<_> =
                    older[older.len() - wanted.min(3)..].iter().map(|i| message(*i)).collect();
                Reply::Messages { more: page.len() < wanted, messages: page }
            }
            _ => Reply::Done,
        }
    }

    fn message_ids(messages: &[ChatMessage]) -> Vec<i64> {
        messages.iter().map(|m| m.id).collect()
    }

    #[tokio::test]
    async fn contacts_inbox_and_history_are_read_page_by_page_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let (client, received) = client_answering(dir.path(), paging_supernode).await;
        let names: Vec<_> =
            client.contacts().await.unwrap().into_iter().map(|c| c.username).collect();
        assert_eq!(names, ["amy", "bob", "cat", "dan", "eve"]);

        let inbox = |limit| Request::Inbox { limit, after: None };
        let all = client.messages(inbox(Some(100))).await.unwrap();
        assert_eq!(message_ids(&all), (1..=9).collect::<Vec<_>>(), "every unread message");
        let five = client.messages(inbox(Some(5))).await.unwrap();
        assert_eq!(message_ids(&five), [1, 2, 3, 4, 5], "no more than the limit");

        let history = |limit| Request::History { with: "bob".into(), limit, before: None };
        let newest = client.messages(history(Some(7))).await.unwrap();
        assert_eq!(message_ids(&newest), [3, 4, 5, 6, 7, 8, 9], "the newest 7, oldest first");
        let default = client.messages(history(None)).await.unwrap();
        assert_eq!(message_ids(&default), (1..=9).collect::<Vec<_>>());
        drop(client);

        let requests: Vec<_> = received.await.unwrap().into_iter().map(|f| f.request).collect();
        assert!(
            requests.contains(&Request::Contacts { after: Some("bob".into()) }),
            "the second page starts after the last name: {requests:?}"
        );
        assert!(
            requests.contains(&Request::Inbox { limit: Some(2), after: Some(3) }),
            "the next page asks for the rest after the last id: {requests:?}"
        );
        assert!(
            requests.contains(&Request::History {
                with: "bob".into(),
                limit: Some(4),
                before: Some(7)
            }),
            "the next page asks for the rest before the oldest id: {requests:?}"
        );
    }

    #[tokio::test]
    async fn a_supernode_that_repeats_a_page_does_not_keep_the_client_asking() {
        let dir = tempfile::tempdir().unwrap();
        let (client, received) = client_answering(dir.path(), |request| match request {
            Request::Contacts { .. } => {
                Reply::Contacts { contacts: vec![contact("amy")], more: true }
            }
            _ => Reply::Messages { messages: vec![message(5)], more: true },
        })
        .await;
        assert_eq!(client.contacts().await.unwrap().len(), 2);
        let inbox = client.messages(Request::Inbox { limit: None, after: None }).await.unwrap();
        assert_eq!(message_ids(&inbox), [5, 5]);
        let history = Request::History { with: "bob".into(), limit: None, before: None };
        assert_eq!(message_ids(&client.messages(history).await.unwrap()), [5, 5]);
        drop(client);
        assert_eq!(received.await.unwrap().len(), 1 + 2 + 2 + 2, "hello, then two of each");
    }

    fn saved(token: &str) -> SavedSession {
        SavedSession { username: "alice".into(), token: token.into(), device_id: 3 }
    }

    fn logins(frames: Vec<ClientFrame>) -> Vec<Login> {
        frames
            .into_iter()
            .filter_map(|f| match f.request {
                Request::Login(login) => Some(login),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn password_login_saves_the_token_and_signs_the_nonce_with_the_device_key() {
        let dir = tempfile::tempdir().unwrap();
        let (mut client, received) = client(dir.path()).await;
        let reply = client.login_with_password("alice", "right").await.unwrap();
        assert!(matches!(&reply, Reply::LoggedIn { token, .. } if token == "fresh"), "{reply:?}");
        assert_eq!(client.username(), Some("alice"));
        assert_eq!(client.home().session(URL).unwrap(), Some(saved("fresh")));

        let key = client.device_key().unwrap().verifying_key();
        drop(client);
        let logins = logins(received.await.unwrap());
        let [login] = logins.as_slice() else { panic!("{logins:?}") };
        assert_eq!((login.password.as_deref(), login.token.as_deref()), (Some("right"), None));
        assert_eq!(login.device.name, "test device");
        let public: [u8; 32] = hex::decode(&login.device.public_key).unwrap().try_into().unwrap();
        assert_eq!(VerifyingKey::from_bytes(&public).unwrap(), key);
        let signature: [u8; 64] = hex::decode(&login.device.signature).unwrap().try_into().unwrap();
        key.verify(&login_challenge(NONCE), &Signature::from_bytes(&signature)).unwrap();
    }

    #[tokio::test]
    async fn a_login_keeps_the_networks_supernodes_for_failover() {
        let dir = tempfile::tempdir().unwrap();
        let (mut client, _received) = client(dir.path()).await;
        client.login_with_password("alice", "right").await.unwrap();
        // Canonical, deduplicated, and only URLs a client may dial (no http://, no plain ws://
        // to a public address).
        let expected = [URL, "wss://sn2.example:7443"];
        assert_eq!(client.supernodes(), expected);
        let network = client.home().network(&["wss://sn2.example:7443".into()]).unwrap();
        assert_eq!(network.hosts.hosts(), expected);
        assert_eq!(network.session, Some(saved("fresh")), "the session holds on sn2 too");
    }

    #[tokio::test]
    async fn a_wrong_password_is_the_servers_error_and_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut client, _received) = client(dir.path()).await;
        let err = client.login_with_password("alice", "wrong").await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidCredentials));
        assert_eq!(client.username(), None);
        assert_eq!(client.home().session(URL).unwrap(), None);
    }

    #[tokio::test]
    async fn saved_token_logs_in_without_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let (mut client, received) = client(dir.path()).await;
        client.home().save_session(URL, &saved("good")).unwrap();
        let reply = client.login_saved().await.unwrap();
        assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
        assert_eq!(client.logged_in_username().unwrap(), "alice");
        drop(client);
        let logins = logins(received.await.unwrap());
        let [login] = logins.as_slice() else { panic!("{logins:?}") };
        assert_eq!((login.password.as_deref(), login.token.as_deref()), (None, Some("good")));
    }

    #[tokio::test]
    async fn a_rejected_token_is_forgotten_and_the_password_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let (mut client, _received) = client(dir.path()).await;
        client.home().save_session(URL, &saved("revoked")).unwrap();
        let err = client.login_saved().await.unwrap_err();
        assert!(
            matches!(&err, ClientError::NotLoggedIn { url, rejected: Some(user) }
                if url == URL && user == "alice"),
            "{err:?}"
        );
        // The user is told why a login that worked before no longer does, and what to run.
        let told = err.to_string();
        assert!(
            told.contains("no longer accepts") && told.contains("peerline login alice"),
            "{told}"
        );
        assert_eq!(client.home().session(URL).unwrap(), None, "the rejected token is forgotten");
        assert_eq!(client.username(), None);

        // Same connection, same nonce: the password login that follows is accepted.
        client.login_with_password("alice", "right").await.unwrap();
        assert_eq!(client.home().session(URL).unwrap(), Some(saved("fresh")));
    }

    #[tokio::test]
    async fn no_saved_session_is_not_logged_in() {
        let dir = tempfile::tempdir().unwrap();
        let (mut client, received) = client(dir.path()).await;
        assert!(matches!(client.login_saved().await, Err(ClientError::NotLoggedIn { .. })));
        drop(client);
        assert!(logins(received.await.unwrap()).is_empty(), "nothing was sent");
    }
}
