//! A logged-in (or logging-in) user: the connection plus the home directory that holds the
//! device key, the pinned certificate and the saved session token.

use std::path::PathBuf;
use std::sync::Arc;

use ed25519_dalek::Signer;
use peerline_wire::{
    ChatMessage, Contact, DeviceProof, ErrorCode, Event, Login, Reply, Request, login_challenge,
};

use crate::connection::{Connection, Endpoint};
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

/// Credentials for the supernode's TURN relays (coturn REST scheme).
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `EXPIRY:USERNAME`.
    pub username: String,
    /// The HMAC password; never logged.
    pub password: String,
    /// Seconds they stay valid.
    pub ttl_secs: u64,
    /// `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("ttl_secs", &self.ttl_secs)
            .field("urls", &self.urls)
            .finish()
    }
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

    /// Short-lived TURN credentials and relay URLs from the supernode (empty URLs when it has
    /// no relay configured).
    pub async fn turn_credentials(&self) -> Result<TurnCredentials, ClientError> {
        match self.request(Request::TurnCredentials).await? {
            Reply::TurnCredentials { username, password, ttl_secs, urls } => {
                Ok(TurnCredentials { username, password, ttl_secs, urls })
            }
            other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
        }
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

    fn device_proof(&self) -> Result<DeviceProof, ClientError> {
        let key = self.home.device_key()?;
        let signature = key.sign(&login_challenge(self.conn.nonce()));
        Ok(DeviceProof {
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(signature.to_bytes()),
            name: self.device_name.clone(),
        })
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
        let login = Login {
            username: username.to_owned(),
            password: Some(password.to_owned()),
            token: None,
            device: self.device_proof()?,
        };
        let reply = self.request(Request::Login(login)).await?;
        self.remember(&reply)?;
        Ok(reply)
    }

    /// Logs in with the session saved in the home directory (no password, no Argon2 on the
    /// supernode). A rejected token is forgotten.
    pub async fn login_saved(&mut self) -> Result<Reply, ClientError> {
        let saved = self
            .home
            .session(&self.url)?
            .ok_or_else(|| ClientError::NotLoggedIn { url: self.url.clone() })?;
        let login = Login {
            username: saved.username.clone(),
            password: None,
            token: Some(saved.token.clone()),
            device: self.device_proof()?,
        };
        match self.request(Request::Login(login)).await {
            Ok(reply) => {
                self.remember(&reply)?;
                Ok(reply)
            }
            Err(err) if err.code() == Some(ErrorCode::InvalidToken) => {
                self.home.clear_session(&self.url)?;
                Err(ClientError::NotLoggedIn { url: self.url.clone() })
            }
            Err(err) => Err(err),
        }
    }

    fn remember(&mut self, reply: &Reply) -> Result<(), ClientError> {
        if let Reply::LoggedIn { username, token, device_id, .. } = reply {
            self.home.save_session(
                &self.url,
                &SavedSession {
                    username: username.clone(),
                    token: token.clone(),
                    device_id: *device_id,
                },
            )?;
            self.username = Some(username.clone());
        }
        Ok(())
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
