//! The login handshake every Peerline client runs on a fresh connection, without IO: `hello`
//! (which brings the supernode's nonce), then optionally `login` with a password or a saved
//! session token, proving possession of the device key by signing
//! [`login_challenge`]`(nonce)`.
//!
//! Each step is its own type, so a driver cannot skip one:
//! [`LoginHandshake`] → hello answer → [`ServerHello`] → [`ServerHello::login`] →
//! [`LoginAttempt`] → login answer → [`LoginOutcome`].
//! A driver that only registers an account stops at [`ServerHello`]; one [`ServerHello`] can start
//! several attempts on the same connection (a rejected saved token, then the password).
//!
//! The driver sends the requests and feeds back the answers as `Result<Reply, ErrorBody>` (the
//! supernode's reply or its error). Transport trouble (timeouts, closed connections) never reaches
//! the handshake: it stays the driver's business. No clock is needed.

use ed25519_dalek::{Signer, SigningKey};
use peerline_wire::{
    ChannelBinding, DeviceId, DeviceProof, ErrorBody, ErrorCode, Login, PROTOCOL_VERSION, Reply,
    Request, Status, login_challenge, login_challenge_bound,
};

/// The start of a handshake: the client's name, until the `hello` answer arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginHandshake {
    client: String,
}

impl LoginHandshake {
    /// A handshake for a client that calls itself `client` in `hello` (free-form name and
    /// version, for the supernode's logs, such as `peerline/0.1.0`).
    pub fn new(client: impl Into<String>) -> Self {
        Self { client: client.into() }
    }

    /// The first request of the connection: `hello` with [`PROTOCOL_VERSION`].
    pub fn hello_request(&self) -> Request {
        Request::Hello { version: PROTOCOL_VERSION, client: self.client.clone() }
    }

    /// Takes the answer to [`LoginHandshake::hello_request`].
    pub fn handle_hello(
        self,
        answer: Result<Reply, ErrorBody>,
    ) -> Result<ServerHello, HandshakeError> {
        match answer {
            Ok(Reply::Hello { version, server, nonce, heartbeat_timeout_secs, stun_port }) => {
                Ok(ServerHello {
                    version,
                    server,
                    nonce,
                    heartbeat_timeout_secs,
                    stun_port,
                    tls_exporter: None,
                })
            }
            Ok(other) => {
                Err(HandshakeError::UnexpectedReply { request: "hello", reply: Box::new(other) })
            }
            Err(body) => Err(HandshakeError::HelloRefused(body)),
        }
    }
}

/// What the supernode said in its `hello` answer. Enough to stop here (to `register`), or to
/// start any number of [`LoginAttempt`]s on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The protocol version the supernode will speak.
    pub version: u32,
    /// The supernode's software name and version.
    pub server: String,
    /// The connection's nonce (hex); a login signs [`login_challenge`] of it.
    pub nonce: String,
    /// The supernode closes a connection silent for this long; ping more often.
    pub heartbeat_timeout_secs: u64,
    /// The UDP port of the supernode's STUN responder, if it runs one.
    pub stun_port: Option<u16>,
    /// The connection's TLS exporter (RFC 9266), when the driver could read it: logins then
    /// sign it too, so that a man in the middle cannot relay them.
    pub tls_exporter: Option<[u8; 32]>,
}

impl ServerHello {
    /// Ties the logins of this connection to its TLS session (RFC 9266 `tls-exporter`).
    pub fn bind_to_tls(mut self, exporter: [u8; 32]) -> Self {
        self.tls_exporter = Some(exporter);
        self
    }

    /// Proves possession of the device key on this connection: the public key and a signature
    /// over [`login_challenge`]`(nonce)` — or, over TLS, [`login_challenge_bound`] with the
    /// connection's exporter — both lowercase hex, with the device's display name.
    pub fn device_proof(&self, key: &SigningKey, device_name: impl Into<String>) -> DeviceProof {
        let (challenge, channel_binding) = match &self.tls_exporter {
            Some(exporter) => {
                (login_challenge_bound(&self.nonce, exporter), Some(ChannelBinding::TlsExporter))
            }
            None => (login_challenge(&self.nonce), None),
        };
        let signature = key.sign(&challenge);
        DeviceProof {
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(signature.to_bytes()),
            name: device_name.into(),
            channel_binding,
        }
    }

    /// Starts a login of `username` from the device `key` (shown as `device_name` in
    /// `devices`), proving the account with `credential`.
    pub fn login(
        &self,
        username: impl Into<String>,
        credential: Credential,
        key: &SigningKey,
        device_name: impl Into<String>,
    ) -> LoginAttempt {
        let device = self.device_proof(key, device_name);
        let (password, token) = match credential {
            Credential::Password(password) => (Some(password), None),
            Credential::Token(token) => (None, Some(token)),
        };
        LoginAttempt {
            login: Login { username: username.into(), password, token, device, quiet: false },
        }
    }
}

/// How a login proves the account.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The account password (costs an Argon2id verification on the supernode).
    Password(String),
    /// A session token from an earlier login of the same device; if the supernode rejects it,
    /// the outcome is [`LoginOutcome::ForgetToken`].
    Token(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        match self {
            Self::Password(_) => f.write_str("Password(<redacted>)"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// One `login` request, waiting for its answer.
#[derive(Clone, PartialEq)]
pub struct LoginAttempt {
    login: Login,
}

impl LoginAttempt {
    /// The `login` request to send.
    pub fn request(&self) -> Request {
        Request::Login(self.login.clone())
    }

    /// Makes this a quiet login: the device does its requests without appearing online, and
    /// nothing is pushed to it (see [`Login::quiet`]). For one-shot commands.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.login.quiet = quiet;
        self
    }

    /// Whether this attempt proves the account with a session token rather than a password.
    pub fn uses_token(&self) -> bool {
        self.login.token.is_some()
    }

    /// Takes the answer to [`LoginAttempt::request`]. A refusal is an outcome, not an error; the
    /// error is a reply of the wrong kind.
    pub fn handle_answer(
        self,
        answer: Result<Reply, ErrorBody>,
    ) -> Result<LoginOutcome, HandshakeError> {
        match answer {
            Ok(Reply::LoggedIn {
                username,
                display_name,
                device_id,
                token,
                status,
                supernodes,
            }) => Ok(LoginOutcome::LoggedIn(LoggedIn {
                username,
                display_name,
                device_id,
                token,
                status,
                supernodes,
            })),
            Ok(other) => {
                Err(HandshakeError::UnexpectedReply { request: "login", reply: Box::new(other) })
            }
            Err(body) if body.code == ErrorCode::InvalidToken && self.uses_token() => {
                Ok(LoginOutcome::ForgetToken(body))
            }
            Err(body) => Ok(LoginOutcome::Failed(body)),
        }
    }
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("username", &self.login.username)
            .field("uses_token", &self.uses_token())
            .finish_non_exhaustive()
    }
}

/// How a login ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginOutcome {
    /// The connection is logged in.
    LoggedIn(LoggedIn),
    /// The saved session token is unknown, expired or revoked: forget it and log in with the
    /// password. Only for [`Credential::Token`] logins.
    ForgetToken(ErrorBody),
    /// The supernode refused the login (wrong password, throttled, bad device signature, ...).
    Failed(ErrorBody),
}

/// A successful login: everything the supernode's `logged_in` answer carries.
#[derive(Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// The canonical (lower-case) username.
    pub username: String,
    /// The account's display name.
    pub display_name: String,
    /// This device's id on the account.
    pub device_id: DeviceId,
    /// The session token to save for the next login of this device (a token login returns the
    /// same token).
    pub token: String,
    /// The account's chosen status.
    pub status: Status,
    /// Client URLs of the network's supernodes, where the token is valid too (the host cache
    /// for failover); empty when the supernode lists none.
    pub supernodes: Vec<String>,
}

impl From<LoggedIn> for Reply {
    fn from(l: LoggedIn) -> Self {
        Reply::LoggedIn {
            username: l.username,
            display_name: l.display_name,
            device_id: l.device_id,
            token: l.token,
            status: l.status,
            supernodes: l.supernodes,
        }
    }
}

impl std::fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn")
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("device_id", &self.device_id)
            .field("token", &"<redacted>")
            .field("status", &self.status)
            .field("supernodes", &self.supernodes)
            .finish()
    }
}

/// The supernode broke the handshake.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandshakeError {
    /// The supernode refused `hello` (for example `unsupported_version`: update the client).
    #[error("the supernode refused hello: {0}")]
    HelloRefused(ErrorBody),
    /// The supernode answered with a reply of the wrong kind.
    #[error("the supernode answered {request} with an unexpected {} reply", reply_type(.reply))]
    UnexpectedReply {
        /// The request answered: `hello` or `login`.
        request: &'static str,
        /// What came back instead (boxed: a reply can be large, the error should not be).
        reply: Box<Reply>,
    },
}

/// The wire `type` of a reply, for messages that must not print its fields (tokens).
fn reply_type(reply: &Reply) -> String {
    serde_json::to_value(reply)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn hello_reply() -> Reply {
        Reply::Hello {
            version: PROTOCOL_VERSION,
            server: "peerline-supernode/test".into(),
            nonce: NONCE.into(),
            heartbeat_timeout_secs: 45,
            stun_port: Some(3478),
        }
    }

    fn greeted() -> ServerHello {
        LoginHandshake::new("peerline/test").handle_hello(Ok(hello_reply())).unwrap()
    }

    fn logged_in_reply(token: &str) -> Reply {
        Reply::LoggedIn {
            username: "alice".into(),
            display_name: "Alice".into(),
            device_id: 4,
            token: token.into(),
            status: Status::Online,
            supernodes: vec!["wss://sn2.example:7443".into()],
        }
    }

    fn login_of(request: Request) -> Login {
        match request {
            Request::Login(login) => login,
            other => panic!("expected a login request, got {other:?}"),
        }
    }

    #[test]
    fn hello_names_the_client_and_the_protocol_version() {
        let handshake = LoginHandshake::new("peerline/9.9");
        assert_eq!(
            handshake.hello_request(),
            Request::Hello { version: PROTOCOL_VERSION, client: "peerline/9.9".into() }
        );
    }

    #[test]
    fn hello_remembers_what_the_supernode_said() {
        let hello = greeted();
        assert_eq!(hello.nonce, NONCE);
        assert_eq!(hello.heartbeat_timeout_secs, 45);
        assert_eq!(hello.stun_port, Some(3478));
        assert_eq!(hello.version, PROTOCOL_VERSION);
        assert_eq!(hello.server, "peerline-supernode/test");
    }

    #[test]
    fn password_login_after_hello() {
        let attempt =
            greeted().login("alice", Credential::Password("hunter22".into()), &key(), "laptop");
        assert!(!attempt.uses_token());
        let login = login_of(attempt.request());
        assert_eq!(login.username, "alice");
        assert_eq!(login.password.as_deref(), Some("hunter22"));
        assert_eq!(login.token, None);
        assert_eq!(login.device.name, "laptop");
        match attempt.handle_answer(Ok(logged_in_reply("tok-1"))).unwrap() {
            LoginOutcome::LoggedIn(l) => {
                assert_eq!(
                    (l.username.as_str(), l.token.as_str(), l.device_id),
                    ("alice", "tok-1", 4)
                );
                assert_eq!(
                    Reply::from(l),
                    logged_in_reply("tok-1"),
                    "nothing of the reply is lost"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_login_after_hello() {
        let attempt = greeted().login("alice", Credential::Token("tok-1".into()), &key(), "laptop");
        assert!(attempt.uses_token());
        let login = login_of(attempt.request());
        assert_eq!(login.password, None);
        assert_eq!(login.token.as_deref(), Some("tok-1"));
        let outcome = attempt.handle_answer(Ok(logged_in_reply("tok-1"))).unwrap();
        assert!(matches!(outcome, LoginOutcome::LoggedIn(l) if l.token == "tok-1"));
    }

    #[test]
    fn a_rejected_token_is_to_be_forgotten() {
        let attempt = greeted().login("alice", Credential::Token("old".into()), &key(), "laptop");
        let body = ErrorBody::new(ErrorCode::InvalidToken);
        assert_eq!(
            attempt.handle_answer(Err(body.clone())).unwrap(),
            LoginOutcome::ForgetToken(body)
        );
    }

    #[test]
    fn invalid_token_to_a_password_login_is_just_a_failure() {
        let attempt = greeted().login("alice", Credential::Password("pw".into()), &key(), "laptop");
        let body = ErrorBody::new(ErrorCode::InvalidToken);
        assert_eq!(attempt.handle_answer(Err(body.clone())).unwrap(), LoginOutcome::Failed(body));
    }

    #[test]
    fn other_refusals_fail_without_forgetting_the_token() {
        for code in [
            ErrorCode::InvalidCredentials,
            ErrorCode::LoginThrottled,
            ErrorCode::InvalidDeviceSignature,
            ErrorCode::AlreadyAuthenticated,
            ErrorCode::Unknown,
        ] {
            for credential in [Credential::Token("t".into()), Credential::Password("p".into())] {
                let attempt = greeted().login("alice", credential, &key(), "laptop");
                let body = ErrorBody::new(code);
                assert_eq!(
                    attempt.handle_answer(Err(body.clone())).unwrap(),
                    LoginOutcome::Failed(body)
                );
            }
        }
    }

    #[test]
    fn the_device_proof_verifies_over_the_login_challenge() {
        let key = key();
        let login = login_of(
            greeted().login("alice", Credential::Password("pw".into()), &key, "laptop").request(),
        );
        let public: [u8; 32] = hex::decode(&login.device.public_key).unwrap().try_into().unwrap();
        let public = VerifyingKey::from_bytes(&public).unwrap();
        assert_eq!(public, key.verifying_key());
        let signature: [u8; 64] = hex::decode(&login.device.signature).unwrap().try_into().unwrap();
        let signature = Signature::from_bytes(&signature);
        public.verify(&login_challenge(NONCE), &signature).unwrap();
        assert!(
            public.verify(&login_challenge("another connection"), &signature).is_err(),
            "the signature is bound to this connection's nonce"
        );
        assert_eq!(login.device.public_key, login.device.public_key.to_lowercase());
    }

    #[test]
    fn unexpected_replies_are_errors() {
        let err = LoginHandshake::new("c").handle_hello(Ok(Reply::Done)).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::UnexpectedReply { request: "hello", reply: Box::new(Reply::Done) }
        );
        assert_eq!(err.to_string(), "the supernode answered hello with an unexpected done reply");

        let err =
            LoginHandshake::new("c").handle_hello(Ok(logged_in_reply("secret-token"))).unwrap_err();
        assert!(!err.to_string().contains("secret-token"), "{err}");

        let attempt = greeted().login("alice", Credential::Token("t".into()), &key(), "laptop");
        let err = attempt.handle_answer(Ok(hello_reply())).unwrap_err();
        assert!(matches!(err, HandshakeError::UnexpectedReply { request: "login", .. }));
    }

    #[test]
    fn a_refused_hello_is_an_error() {
        let body = ErrorBody::new(ErrorCode::UnsupportedVersion);
        let err = LoginHandshake::new("c").handle_hello(Err(body.clone())).unwrap_err();
        assert_eq!(err, HandshakeError::HelloRefused(body));
    }

    #[test]
    fn one_hello_serves_several_attempts() {
        let hello = greeted();
        let first = hello.login("alice", Credential::Token("old".into()), &key(), "laptop");
        assert!(matches!(
            first.handle_answer(Err(ErrorCode::InvalidToken.into())).unwrap(),
            LoginOutcome::ForgetToken(_)
        ));
        let second = hello.login("alice", Credential::Password("pw".into()), &key(), "laptop");
        assert!(matches!(
            second.handle_answer(Ok(logged_in_reply("new"))).unwrap(),
            LoginOutcome::LoggedIn(_)
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let attempt =
            greeted().login("alice", Credential::Password("hunter22".into()), &key(), "laptop");
        assert!(!format!("{attempt:?}").contains("hunter22"));
        assert!(!format!("{:?}", Credential::Token("tok-9".into())).contains("tok-9"));
        let LoginOutcome::LoggedIn(l) =
            attempt.handle_answer(Ok(logged_in_reply("tok-9"))).unwrap()
        else {
            panic!("not logged in")
        };
        assert!(!format!("{l:?}").contains("tok-9"));
    }
}
