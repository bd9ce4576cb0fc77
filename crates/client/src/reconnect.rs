//! Failover, the thin driver: opens a connection to one supernode of the network with the
//! network's trust (pinning its certificate on first use), and after a loss goes round the host
//! cache with the sans-IO [`Failover`] policy of `peerline-client-core`, which decides which host
//! and when (full-jitter exponential backoff, `retry_after_secs` obeyed). This module only
//! sleeps, dials and logs in with the session token; it never sends a password.
//!
//! Time comes from tokio's clock and randomness from the thread's generator, both handed to the
//! policy as arguments.

use std::path::Path;
use std::time::Duration;

use peerline_client_core::{Failover, Refusal, sort_refusal};
use tracing::{debug, info, warn};

use crate::client::Client;
use crate::connection::{Connection, Endpoint};
use crate::error::ClientError;
use crate::home::Home;
use crate::tls::{TlsSetupError, Trust, format_fingerprint};

pub(crate) use crate::connection::now;

/// A uniform random number in `[0, 1)` for the policy's jitter.
pub(crate) fn jitter() -> f64 {
    rand::random::<f64>()
}

/// A connection opened to one supernode of a network.
pub(crate) struct Opened {
    /// The connection, `hello` done.
    pub(crate) conn: Connection,
    /// How the supernode was verified (with a new pin filled in).
    pub(crate) trust: Trust,
    /// The fingerprint pinned by this connection on first use, which nobody has compared yet,
    /// for telling the user (and asking before a password goes there). `None` when the network
    /// was pinned already, or the pin was the fingerprint the user gave.
    pub(crate) newly_pinned: Option<String>,
}

/// How to trust the supernodes of the network of `network`: against the CA file if there is
/// one, else against the network's pin, or `expected` (the fingerprint the user gave) for a
/// network without one. Returns the trust and the network's pin as read.
///
/// A fingerprint given with a CA file, or other than the network's pin, is refused before
/// anything is dialed: which of the two is right is for the user to find out.
pub(crate) fn network_trust(
    home: &Home,
    network: &[String],
    ca_file: Option<&Path>,
    expected: Option<[u8; 32]>,
) -> Result<(Trust, Option<[u8; 32]>), ClientError> {
    let pinned = home.network(network)?.pin;
    let trust = match (ca_file, expected, pinned) {
        (Some(ca_file), Some(_), _) => {
            return Err(TlsSetupError::FingerprintWithCa { ca_file: ca_file.to_path_buf() }.into());
        }
        (Some(ca_file), None, _) => Trust::Ca { ca_file: ca_file.to_path_buf() },
        (None, Some(given), Some(pin)) if given != pin => {
            let mut named: Vec<&str> = Vec::new();
            for url in network {
                if !named.contains(&url.as_str()) {
                    named.push(url);
                }
            }
            return Err(TlsSetupError::PinConflict {
                network: named.join(", "),
                pinned: format_fingerprint(&pin),
                given: format_fingerprint(&given),
                networks_file: home.networks_path(),
            }
            .into());
        }
        (None, expected, pinned) => Trust::Pin { expected: pinned.or(expected) },
    };
    Ok((trust, pinned))
}

/// Dials `url` and says `hello`, trusting the supernode as [`network_trust`] says. A network
/// without a pin pins the certificate this supernode presents (`expected`, if given: the
/// verifier lets no other through), for all of its supernodes. `network` are URLs that find the
/// network in the home.
pub(crate) async fn open(
    home: &Home,
    network: &[String],
    url: &str,
    ca_file: Option<&Path>,
    expected: Option<[u8; 32]>,
) -> Result<Opened, ClientError> {
    let endpoint = Endpoint::parse(url)?;
    let (trust, pinned) = network_trust(home, network, ca_file, expected)?;
    if expected.is_some() && !endpoint.tls {
        return Err(TlsSetupError::FingerprintWithoutTls { url: url.to_owned() }.into());
    }
    let (conn, presented) = Connection::connect(&endpoint, &trust, &home.networks_path()).await?;
    let (None, Trust::Pin { .. }, Some(fingerprint)) = (pinned, &trust, presented.fingerprint)
    else {
        return Ok(Opened { conn, trust, newly_pinned: None });
    };
    // First use. Another process sharing the home may have pinned the network meanwhile
    // (through another of its supernodes): then that pin decides.
    let saved = home.update_network(network, |n| {
        n.pin.get_or_insert(fingerprint);
    })?;
    match saved.pin {
        Some(pinned) if pinned != fingerprint => Err(ClientError::CertificateChanged {
            host_port: endpoint.host_port(),
            pinned: format_fingerprint(&pinned),
            presented: format_fingerprint(&fingerprint),
            known_file: home.networks_path(),
        }),
        _ => Ok(Opened {
            conn,
            trust: Trust::Pin { expected: Some(fingerprint) },
            // A fingerprint the user gave was compared by them; only one seen here was not.
            newly_pinned: expected.is_none().then(|| format_fingerprint(&fingerprint)),
        }),
    }
}

/// Tells the policy how an attempt failed: a refusal with `retry_after_secs` keeps that
/// supernode out until then; anything else is an ordinary failure (next host, after backoff).
pub(crate) fn judge(failover: &mut Failover, error: &ClientError) {
    match retry_after(error) {
        Some(delay) => failover.refused(now(), delay, jitter()),
        None => failover.failed(),
    }
}

/// The delay a supernode asked for when it refused (client-core's [`sort_refusal`]).
fn retry_after(error: &ClientError) -> Option<Duration> {
    match error {
        ClientError::Server(body) => match sort_refusal(body) {
            Refusal::Wait(delay) => Some(delay),
            Refusal::GiveUp | Refusal::Failed => None,
        },
        _ => None,
    }
}

/// Whether no supernode will do better: the session is void (the user must log in with the
/// password), the device is refused, or the home or TLS setup is broken. Everything else is one
/// supernode's trouble, and the next may do.
fn gives_up(error: &ClientError) -> bool {
    match error {
        ClientError::NotLoggedIn { .. } | ClientError::Home(_) | ClientError::TlsSetup(_) => true,
        ClientError::Server(body) => sort_refusal(body) == Refusal::GiveUp,
        _ => false,
    }
}

/// A connection taken up again after a loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnected {
    /// The supernode it goes to now.
    pub url: String,
    /// How many attempts it took (1: the first one worked).
    pub attempts: u32,
}

impl Client {
    /// Connects again after the connection dropped (its supernode died, or the network changed
    /// under a call) and logs in with the saved session token, never the password: to the next
    /// supernode of the network's host cache, waiting before each attempt with full-jitter
    /// exponential backoff (0.5 s base, 30 s cap, reset once a connection stayed up a minute)
    /// and obeying the `retry_after_secs` of refusals.
    ///
    /// Tries until it is back, or until no supernode can help: the session is void
    /// ([`ClientError::NotLoggedIn`]: log in with the password), or the home is broken. A
    /// caller that can only wait so long (a call's resume step) bounds it with a timeout;
    /// calling again goes on with the same plan. A supernode presenting a certificate other
    /// than the network's is skipped with a warning, never used.
    pub async fn reconnect(&mut self) -> Result<Reconnected, ClientError> {
        self.failover.lost(now());
        loop {
            let Some(attempt) = self.failover.plan(now(), jitter()) else {
                return Err(ClientError::NotLoggedIn { url: self.url.clone(), rejected: None });
            };
            tokio::time::sleep_until(tokio::time::Instant::from_std(attempt.at)).await;
            self.failover.started();
            match self.resume_on(&attempt.host).await {
                Ok(()) => {
                    self.failover.connected(now());
                    info!(supernode = %attempt.host, attempts = attempt.number, "reconnected");
                    return Ok(Reconnected { url: attempt.host, attempts: attempt.number });
                }
                Err(e) if gives_up(&e) => return Err(e),
                Err(e @ ClientError::CertificateChanged { .. }) => {
                    warn!(supernode = %attempt.host, "skipping a supernode: {e}");
                    self.failover.failed();
                }
                Err(e) => {
                    debug!(supernode = %attempt.host, error = %e, "reconnect attempt failed");
                    judge(&mut self.failover, &e);
                }
            }
        }
    }

    /// Opens a connection to `url` and logs in there with the saved token.
    async fn resume_on(&mut self, url: &str) -> Result<(), ClientError> {
        let key: Vec<String> = self.given.iter().cloned().chain([url.to_owned()]).collect();
        let opened =
            open(&self.home, &key, url, self.ca_file.as_deref(), self.expected_pin).await?;
        self.conn = opened.conn;
        self.trust = opened.trust;
        url.clone_into(&mut self.url);
        self.login_saved().await?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use peerline_client_core::FailoverConfig;
    use peerline_wire::{ErrorBody, ErrorCode};

    use super::*;

    fn refusal(code: ErrorCode, secs: Option<u64>) -> ClientError {
        let mut body = ErrorBody::new(code);
        body.retry_after_secs = secs;
        ClientError::Server(body)
    }

    #[test]
    fn refusals_with_a_delay_hold_the_supernode_and_other_errors_do_not() {
        let hosts = vec!["wss://a:1".to_owned(), "wss://b:1".to_owned()];
        for (error, held) in [
            (refusal(ErrorCode::ShuttingDown, Some(60)), true),
            (refusal(ErrorCode::Unavailable, Some(60)), true),
            (refusal(ErrorCode::RateLimited, Some(60)), true),
            (refusal(ErrorCode::LoginThrottled, Some(60)), true),
            (refusal(ErrorCode::ShuttingDown, None), false),
            (refusal(ErrorCode::Internal, Some(60)), false),
            (ClientError::TimedOut, false),
        ] {
            let mut failover = Failover::new(hosts.clone(), FailoverConfig::default());
            let t0 = now();
            failover.plan(t0, 0.0);
            failover.started();
            judge(&mut failover, &error);
            // b fails too: a comes next, unless it asked for a minute (then b again).
            failover.plan(t0, 0.0);
            failover.started();
            failover.failed();
            let next = failover.plan(t0, 0.0).unwrap();
            let expected = if held { "wss://b:1" } else { "wss://a:1" };
            assert_eq!((next.host.as_str(), next.at), (expected, t0), "{error:?}");
        }
    }

    #[test]
    fn a_given_fingerprint_is_the_pin_of_an_unpinned_network_and_must_agree_with_a_pinned_one() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        let network = vec!["wss://a:1".to_owned()];
        let trust = |expected| network_trust(&home, &network, None, expected);

        assert_eq!(trust(None).unwrap(), (Trust::Pin { expected: None }, None), "first use");
        assert_eq!(trust(Some([1; 32])).unwrap(), (Trust::Pin { expected: Some([1; 32]) }, None));

        home.pin(&network, [1; 32], false).unwrap();
        let pinned = (Trust::Pin { expected: Some([1; 32]) }, Some([1; 32]));
        assert_eq!(trust(None).unwrap(), pinned);
        assert_eq!(trust(Some([1; 32])).unwrap(), pinned, "the same: no conflict");

        let err = trust(Some([2; 32])).unwrap_err();
        let ClientError::TlsSetup(TlsSetupError::PinConflict { network, pinned, given, .. }) = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(network, "wss://a:1");
        assert_eq!((pinned, given), (&format_fingerprint(&[1; 32]), &format_fingerprint(&[2; 32])));
        let text = err.to_string();
        assert!(text.contains(pinned) && text.contains(given), "names both: {text}");
        assert!(text.contains("peerline trust --forget --fingerprint"), "says what to do: {text}");
        assert!(gives_up(&err), "no supernode of the network does better");
    }

    #[test]
    fn a_given_fingerprint_and_a_ca_file_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        let network = vec!["wss://a:1".to_owned()];
        let ca = dir.path().join("ca.pem");
        let err = network_trust(&home, &network, Some(&ca), Some([1; 32])).unwrap_err();
        assert!(
            matches!(&err, ClientError::TlsSetup(TlsSetupError::FingerprintWithCa { ca_file })
                if *ca_file == ca),
            "{err:?}"
        );
        let (trust, _) = network_trust(&home, &network, Some(&ca), None).unwrap();
        assert_eq!(trust, Trust::Ca { ca_file: ca });
    }

    #[tokio::test]
    async fn a_given_fingerprint_is_refused_for_plain_ws_before_dialing() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        // Port 9 (discard) on loopback: dialing would fail with a connect error instead.
        let url = "ws://127.0.0.1:9";
        let network = vec![url.to_owned()];
        let Err(err) = open(&home, &network, url, None, Some([1; 32])).await else {
            panic!("opened a plain ws:// connection with a fingerprint")
        };
        assert!(
            matches!(&err, ClientError::TlsSetup(TlsSetupError::FingerprintWithoutTls { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn only_a_void_session_or_a_broken_home_stops_the_reconnect() {
        assert!(gives_up(&ClientError::NotLoggedIn { url: "wss://a:1".into(), rejected: None }));
        assert!(gives_up(&refusal(ErrorCode::InvalidToken, None)));
        assert!(gives_up(&refusal(ErrorCode::InvalidDeviceSignature, None)));
        assert!(!gives_up(&refusal(ErrorCode::ShuttingDown, Some(1))));
        assert!(!gives_up(&ClientError::Closed(None)));
        assert!(!gives_up(&ClientError::TimedOut));
        assert!(!gives_up(&ClientError::CertificateChanged {
            host_port: "a:1".into(),
            pinned: String::new(),
            presented: String::new(),
            known_file: "networks.json".into(),
        }));
    }
}
