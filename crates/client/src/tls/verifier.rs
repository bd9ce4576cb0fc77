//! The certificate verifier behind every client config, and what it reports: it records the
//! presented certificate in a [`PinObservation`], then checks it against the pin (failing with a
//! [`PinMismatch`], which [`pin_mismatch`] finds again in the connect error) or against the CA
//! roots. Handshake signatures are always verified, whatever the check.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::SignatureScheme;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};

use super::fingerprint::{fingerprint_of, format_fingerprint};

/// What the verifier saw: the fingerprint of the last end-entity certificate a server presented
/// through this config, recorded before it is checked. Use it to pin the certificate after a
/// successful first connection, or to tell the user which certificate was presented.
///
/// It is set before the handshake signature is verified, so pin it only after the connection
/// succeeded. A config is shared by every connection made with it; build one per connection
/// attempt (they are cheap) so the observation belongs to that attempt.
#[derive(Default, Debug)]
pub struct PinObservation {
    seen: Mutex<Option<[u8; 32]>>,
}

impl PinObservation {
    /// The fingerprint of the certificate the server presented, if a handshake got that far.
    pub fn observed(&self) -> Option<[u8; 32]> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, fingerprint: [u8; 32]) {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
    }
}

/// The error the pinning verifier fails the handshake with when the certificate is not the
/// pinned one. It reaches the caller inside a `rustls::Error` inside an `io::Error`; find it with
/// [`pin_mismatch`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the supernode's certificate changed: pinned {}, presented {}",
    format_fingerprint(.expected),
    format_fingerprint(.presented)
)]
pub struct PinMismatch {
    /// The pinned fingerprint.
    pub expected: [u8; 32],
    /// The fingerprint of the certificate the server presented.
    pub presented: [u8; 32],
}

/// The [`PinMismatch`] behind a failed connection, if that is why it failed. Accepts the
/// `io::Error` from `tokio_rustls::TlsConnector::connect` (which wraps a `rustls::Error`), a
/// `rustls::Error`, or any error whose `source()` chain leads to one of these (for example a
/// `tokio_tungstenite::Error::Io`).
pub fn pin_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<PinMismatch> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(mismatch) = err.downcast_ref::<PinMismatch>() {
            return Some(mismatch.clone());
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) =
            err.downcast_ref::<rustls::Error>()
        {
            return inner.downcast_ref::<PinMismatch>().cloned();
        }
        // `io::Error::source` skips the wrapped error itself; `get_ref` returns it.
        current = match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// Whether a failed TLS handshake failed because the certificate did not match the pin.
pub fn is_pin_mismatch(err: &io::Error) -> bool {
    pin_mismatch(err).is_some()
}

/// How [`SupernodeVerifier`] judges the certificate chain.
#[derive(Debug)]
pub(super) enum Check {
    /// Compare the end-entity fingerprint with the pin (or accept any, on first use).
    Pin { expected: Option<[u8; 32]> },
    /// Ordinary WebPKI chain and name verification.
    Ca { webpki: Arc<WebPkiServerVerifier> },
}

/// Records the presented certificate, then applies [`Check`]. Handshake signatures are always
/// verified with the provider's algorithms, whatever the check.
#[derive(Debug)]
pub(super) struct SupernodeVerifier {
    pub(super) check: Check,
    pub(super) algorithms: WebPkiSupportedAlgorithms,
    pub(super) observation: Arc<PinObservation>,
}

impl ServerCertVerifier for SupernodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint_of(end_entity);
        self.observation.record(presented);
        match &self.check {
            Check::Pin { expected: None } => Ok(ServerCertVerified::assertion()),
            Check::Pin { expected: Some(expected) } if *expected == presented => {
                Ok(ServerCertVerified::assertion())
            }
            Check::Pin { expected: Some(expected) } => {
                let mismatch = PinMismatch { expected: *expected, presented };
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
                    Arc::new(mismatch),
                ))))
            }
            Check::Ca { webpki } => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        match &self.check {
            Check::Pin { .. } => None,
            Check::Ca { webpki } => webpki.root_hint_subjects(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::tls::test_server::{
        KEY_PEM, OTHER_KEY_PEM, cert, handshake, server_config, server_config_with,
    };
    use crate::tls::{Trust, client_config};

    #[tokio::test]
    async fn tofu_connects_and_observes_the_certificate() {
        let (client, observation) = client_config(&Trust::Pin { expected: None }).unwrap();
        assert_eq!(client.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(observation.observed(), None);
        handshake(server_config(KEY_PEM), client, "localhost").await.unwrap();
        assert_eq!(observation.observed(), Some(fingerprint_of(&cert())));
    }

    #[tokio::test]
    async fn pinned_certificate_connects_whatever_the_name() {
        let pin = fingerprint_of(&cert());
        for name in ["localhost", "127.0.0.1", "supernode.invalid"] {
            let (client, observation) = client_config(&Trust::Pin { expected: Some(pin) }).unwrap();
            handshake(server_config(KEY_PEM), client, name).await.unwrap();
            assert_eq!(observation.observed(), Some(pin));
        }
    }

    #[tokio::test]
    async fn other_certificate_is_a_recognizable_pin_mismatch() {
        let pinned = [0x42; 32];
        let (client, observation) = client_config(&Trust::Pin { expected: Some(pinned) }).unwrap();
        let err = handshake(server_config(KEY_PEM), client, "localhost").await.unwrap_err();
        assert!(is_pin_mismatch(&err), "{err:?}");
        let mismatch = pin_mismatch(&err).unwrap();
        assert_eq!(mismatch, PinMismatch { expected: pinned, presented: fingerprint_of(&cert()) });
        assert_eq!(observation.observed(), Some(fingerprint_of(&cert())));
        let text = mismatch.to_string();
        assert!(text.contains(&format_fingerprint(&pinned)), "{text}");
        assert!(text.contains(&format_fingerprint(&fingerprint_of(&cert()))), "{text}");

        // Found through a wrapper's source chain too, as a WebSocket library would report it.
        #[derive(Debug, thiserror::Error)]
        #[error("websocket: {0}")]
        struct Wrapper(#[source] io::Error);
        assert_eq!(pin_mismatch(&Wrapper(err)), Some(mismatch));
    }

    #[tokio::test]
    async fn stolen_certificate_without_its_key_is_rejected_even_when_pinned() {
        let pin = fingerprint_of(&cert());
        // TLS 1.3 and TLS 1.2 verify the handshake signature in different callbacks.
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (client, _) = client_config(&Trust::Pin { expected: Some(pin) }).unwrap();
            handshake(server_config_with(KEY_PEM, &[version]), client, "localhost").await.unwrap();

            let (client, _) = client_config(&Trust::Pin { expected: Some(pin) }).unwrap();
            let server = server_config_with(OTHER_KEY_PEM, &[version]);
            let err = handshake(server, client, "localhost").await.unwrap_err();
            assert!(!is_pin_mismatch(&err), "{err:?}");
            let rustls_err = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            assert!(
                matches!(
                    rustls_err,
                    Some(rustls::Error::InvalidCertificate(CertificateError::BadSignature))
                ),
                "{version:?}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn other_failures_are_not_pin_mismatches() {
        let (client, _) = client_config(&Trust::Pin { expected: None }).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closer = tokio::spawn(async move { drop(listener.accept().await.unwrap()) });
        let tcp = TcpStream::connect(addr).await.unwrap();
        closer.await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client);
        let err = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await;
        assert!(!is_pin_mismatch(&err.unwrap_err()));
        assert!(!is_pin_mismatch(&io::Error::other("x")));
    }
}
