//! A logged-in (or logging-in) user: the connection plus the home directory that holds the
//! device key, the pinned certificate and the saved session token.
//!
//! Logins are built and judged by the sans-IO handshake of `peerline-client-core`
//! ([`peerline_client_core::LoginHandshake`]); this module supplies the device key, the saved
//! token and the network round trip, and keeps the home directory in step with the outcome.

use std::path::PathBuf;
use std::sync::Arc;

use peerline_client_core::{Credential, LoggedIn, LoginOutcome};
use peerline_wire::{ChatMessage, Contact, Event, Reply, Request};

use crate::connection::{Connection, Endpoint, handshake_error, server_answer};
use crate::error::ClientError;
use crate::home::{Home, SavedSession};
use crate::tls::{Trust, client_config, format_fingerprint};

/// How to reach and trust a supernode.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `wss://host:port`.
    pub url: String,
    /// Verify against this CA file instead of pinning on first use.
    pub ca_file: Option<PathBuf>,
    /// Device name shown in `devices`.
    pub device_name: String,
}

/// A connection with its home directory.
pub struct Client {
    conn: Connection,
    home: Home,
    url: String,
    /// Set when this connection pinned a new certificate (first use): its fingerprint.
    pub newly_pinned: Option<String>,
    device_name: String,
    username: Option<String>,
    /// How the supernode was verified; `turns:` relays are verified the same way.
    trust: Trust,
}

impl Client {
    /// Connects and says hello. With no CA file, the certificate is pinned on first use and must
    /// match the pin afterwards.
    pub async fn connect(options: &ConnectOptions, home: Home) -> Result<Self, ClientError> {
        let endpoint = Endpoint::parse(&options.url)?;
        let host_port = endpoint.host_port();
        let trust = match &options.ca_file {
            Some(ca_file) => Trust::Ca { ca_file: ca_file.clone() },
            None => Trust::Pin { expected: home.pinned_fingerprint(&host_port)? },
        };
        let (conn, presented) =
            Connection::connect(&endpoint, &trust, &home.known_supernodes_path()).await?;
        let mut newly_pinned = None;
        let mut trust = trust;
        if let (Trust::Pin { expected: None }, Some(fp)) = (&trust, presented.fingerprint) {
            home.pin_fingerprint(&host_port, &fp)?;
            newly_pinned = Some(format_fingerprint(&fp));
            trust = Trust::Pin { expected: Some(fp) };
        }
        Ok(Self {
            conn,
            home,
            url: options.url.clone(),
            newly_pinned,
            device_name: options.device_name.clone(),
            username: None,
            trust,
        })
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

    /// Connects again after the connection dropped (the network changed under a call) and logs
    /// in with the saved session.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        let endpoint = Endpoint::parse(&self.url)?;
        let known = self.home.known_supernodes_path();
        let (conn, _) = Connection::connect(&endpoint, &self.trust, &known).await?;
        self.conn = conn;
        self.login_saved().await?;
        Ok(())
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
        self.username.clone().ok_or_else(|| ClientError::NotLoggedIn { url: self.url.clone() })
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
        let attempt =
            self.conn.server_hello().login(username, credential, &key, self.device_name.as_str());
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

    /// Logs in with the session saved in the home directory (no password, no Argon2 on the
    /// supernode). A rejected token is forgotten.
    pub async fn login_saved(&mut self) -> Result<Reply, ClientError> {
        let saved = self
            .home
            .session(&self.url)?
            .ok_or_else(|| ClientError::NotLoggedIn { url: self.url.clone() })?;
        match self.attempt_login(&saved.username, Credential::Token(saved.token)).await? {
            LoginOutcome::LoggedIn(logged_in) => self.remember(logged_in),
            LoginOutcome::ForgetToken(_) => {
                self.home.clear_session(&self.url)?;
                Err(ClientError::NotLoggedIn { url: self.url.clone() })
            }
            LoginOutcome::Failed(body) => Err(ClientError::Server(body)),
        }
    }

    /// Saves the session for password-free reconnects and returns the `logged_in` reply.
    fn remember(&mut self, logged_in: LoggedIn) -> Result<Reply, ClientError> {
        self.home.save_session(
            &self.url,
            &SavedSession {
                username: logged_in.username.clone(),
                token: logged_in.token.clone(),
                device_id: logged_in.device_id,
            },
        )?;
        self.username = Some(logged_in.username.clone());
        Ok(logged_in.into())
    }

    /// Logs out: the supernode revokes the token and the saved session is forgotten.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let result = self.done(Request::Logout).await;
        self.home.clear_session(&self.url)?;
        result
    }

    /// The contact list.
    pub async fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        match self.request(Request::Contacts).await? {
            Reply::Contacts { contacts } => Ok(contacts),
            other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
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

    /// A list of messages (`inbox`, `history`).
    pub async fn messages(&self, request: Request) -> Result<Vec<ChatMessage>, ClientError> {
        match self.request(request).await? {
            Reply::Messages { messages } => Ok(messages),
            other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
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
                }
            }
            _ => Reply::Done,
        };
        ServerFrame::Ok { id, result }
    }

    async fn client(home: &std::path::Path) -> (Client, tokio::task::JoinHandle<Vec<ClientFrame>>) {
        let (conn, received) = scripted::connect(supernode).await;
        let client = Client {
            conn: conn.unwrap(),
            home: Home::open(home).unwrap(),
            url: URL.into(),
            newly_pinned: None,
            device_name: "test device".into(),
            username: None,
            trust: Trust::Pin { expected: None },
        };
        (client, received)
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
        assert!(matches!(&err, ClientError::NotLoggedIn { url } if url == URL), "{err:?}");
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
