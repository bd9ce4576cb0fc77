//! TLS client configuration for connecting to a supernode: trust on first use with certificate
//! pinning (the default, for self-hosted supernodes with self-signed certificates), or ordinary
//! WebPKI verification against a CA file.
//!
//! In pin mode the identity of a supernode is the SHA-256 of its certificate, not its name: the
//! verifier records the certificate the server presented in a [`PinObservation`] and rejects it
//! with a [`PinMismatch`] if it differs from the pinned one. The handshake signature is still
//! verified, so an attacker who copies the certificate but lacks its key is rejected too.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls::{RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// ALPN protocol offered to the supernode: the WebSocket upgrade runs over HTTP/1.1.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Formats a certificate fingerprint as uppercase hex byte pairs joined by `:`
/// (`"AB:01:…"`, 95 characters), the form stored in `known_supernodes` and shown to users.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    let mut out = String::with_capacity(95);
    for (i, byte) in fp.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Parses a fingerprint written by [`format_fingerprint`], also in lowercase, or as 64 hex digits
/// without colons. Surrounding whitespace is ignored. Returns `None` for anything else.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let digits: String = if s.contains(':') {
        let pairs: Vec<&str> = s.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return None;
        }
        pairs.concat()
    } else {
        s.to_owned()
    };
    let mut fp = [0u8; 32];
    hex::decode_to_slice(digits, &mut fp).ok()?;
    Some(fp)
}

/// The fingerprint of a certificate: SHA-256 of its DER encoding (the same value as
/// `openssl x509 -noout -fingerprint -sha256`).
pub fn fingerprint_of(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// How the client decides whether to trust a supernode's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trust the certificate whose fingerprint is `expected`; with `None`, trust whatever the
    /// server presents (trust on first use) and let the caller pin what was observed. The server
    /// name is not checked: the pin is the identity.
    Pin {
        /// The pinned fingerprint, from `known_supernodes`.
        expected: Option<[u8; 32]>,
    },
    /// Verify the certificate chain and server name against the CA certificates in a PEM file
    /// (only those; the system roots are not used).
    Ca {
        /// PEM file with one or more CA certificates.
        ca_file: PathBuf,
    },
}

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

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read.
    #[error("cannot read CA file {path}: {source}")]
    ReadCaFile {
        /// The CA file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The CA file is not valid PEM.
    #[error("CA file {path} is not a valid PEM file: {reason}")]
    BadPem {
        /// The CA file.
        path: PathBuf,
        /// The PEM parse error.
        reason: String,
    },
    /// The CA file has no `CERTIFICATE` section.
    #[error("CA file {path} contains no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)")]
    NoCertificates {
        /// The CA file.
        path: PathBuf,
    },
    /// A certificate in the CA file cannot be used as a trust anchor.
    #[error("CA file {path}: certificate {index} cannot be used as a trust anchor: {reason}")]
    BadCaCertificate {
        /// The CA file.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        /// Why it was rejected.
        reason: String,
    },
    /// rustls refused the configuration (for example no usable protocol version).
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// Builds the client configuration for `trust`, with the aws-lc-rs crypto provider (never the
/// process default), safe default protocol versions, and ALPN `http/1.1`. Returns the config and
/// the observation its verifier writes to.
pub fn client_config(
    trust: &Trust,
) -> Result<(Arc<rustls::ClientConfig>, Arc<PinObservation>), TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let observation = Arc::new(PinObservation::default());
    let check = match trust {
        Trust::Pin { expected } => Check::Pin { expected: *expected },
        Trust::Ca { ca_file } => {
            let roots = load_ca_file(ca_file)?;
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsSetupError::Config(e.to_string()))?;
            Check::Ca { webpki: verifier }
        }
    };
    let verifier = SupernodeVerifier {
        check,
        algorithms: provider.signature_verification_algorithms,
        observation: observation.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok((Arc::new(config), observation))
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

/// Reads the CA certificates from a PEM file into a root store.
fn load_ca_file(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let pem = std::fs::read(path)
        .map_err(|source| TlsSetupError::ReadCaFile { path: path.to_path_buf(), source })?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| TlsSetupError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsSetupError::BadCaCertificate {
            path: path.to_path_buf(),
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoCertificates { path: path.to_path_buf() });
    }
    Ok(roots)
}

/// How [`SupernodeVerifier`] judges the certificate chain.
#[derive(Debug)]
enum Check {
    /// Compare the end-entity fingerprint with the pin (or accept any, on first use).
    Pin { expected: Option<[u8; 32]> },
    /// Ordinary WebPKI chain and name verification.
    Ca { webpki: Arc<WebPkiServerVerifier> },
}

/// Records the presented certificate, then applies [`Check`]. Handshake signatures are always
/// verified with the provider's algorithms, whatever the check.
#[derive(Debug)]
struct SupernodeVerifier {
    check: Check,
    algorithms: WebPkiSupportedAlgorithms,
    observation: Arc<PinObservation>,
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
    use super::*;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Self-signed P-256 certificate for `localhost` / 127.0.0.1, valid 2024–2124, CA:FALSE so
    /// WebPKI accepts it as an end-entity certificate when it is also its own trust anchor.
    /// Made with `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes
    /// -subj /CN=localhost` and `openssl ca -selfsign -startdate 20240101000000Z -enddate
    /// 21240101000000Z` with extensions `basicConstraints=critical,CA:FALSE` and
    /// `subjectAltName=DNS:localhost,IP:127.0.0.1` (plain `openssl req -x509` marks it CA:TRUE,
    /// which WebPKI rejects as an end-entity certificate).
    const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBZTCCAQqgAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv
c3QwIBcNMjQwMTAxMDAwMDAwWhgPMjEyNDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEbiFReNu7UrnnOR
3XcOcL6sJV8KkjQihZX1k1inc7L/scqTG1dWA3WTetMO587tRatC9ZpgZBcybmXT
aTQiwMSjSzBJMAwGA1UdEwEB/wQCMAAwGgYDVR0RBBMwEYIJbG9jYWxob3N0hwR/
AAABMB0GA1UdDgQWBBTnLRshdPG9CEZ6QJ9y/lXJIX/jojAKBggqhkjOPQQDAgNJ
ADBGAiEAk08irtY5oa0lIbapIaExeXtqfiDScLQhbA2leHGcy60CIQDUNW8DSVpE
6yKO5y6Ay2TmUCV7ki6f5cRsZL1oEHo3gw==
-----END CERTIFICATE-----
";

    /// The private key of [`CERT_PEM`].
    const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAiB9rBhUavNvMeuB
AUxzE5KcYgzg7uDPPCaD4db4ekyhRANCAARG4hUXjbu1K55zkd13DnC+rCVfCpI0
IoWV9ZNYp3Oy/7HKkxtXVgN1k3rTDufO7UWrQvWaYGQXMm5l02k0IsDE
-----END PRIVATE KEY-----
";

    /// An unrelated P-256 key: a server presenting [`CERT_PEM`] but signing with this key does
    /// not own the certificate.
    const OTHER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDC3xRb2PnlplajNa
FWlwLTVa6gDdZI+Qsz8tXO4KIXOhRANCAARthDOgTIvkELTnRFukzV879GgCTlQE
xZeHig2Vwtilvr6URH5WKOCLwyLe4FcMkNxXqtxf90poU/AsCLCdsz5W
-----END PRIVATE KEY-----
";

    fn cert() -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(CERT_PEM.as_bytes()).unwrap()
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn server_config(key_pem: &str) -> Arc<rustls::ServerConfig> {
        server_config_with(key_pem, rustls::DEFAULT_VERSIONS)
    }

    fn server_config_with(
        key_pem: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ServerConfig> {
        let provider = provider();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        // `CertifiedKey::new` does not check that key and certificate match, which lets a test
        // server impersonate the certificate without its key.
        let signing_key = provider.key_provider.load_private_key(key).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![cert()], signing_key);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Runs a TLS handshake over loopback TCP and exchanges one message. Returns the client's
    /// result; the server's outcome only matters when the client succeeded.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
            tls.write_all(b"hello").await?;
            tls.shutdown().await?;
            io::Result::Ok(())
        });
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let result = async {
            let mut tls = connector.connect(name, tcp).await?;
            let mut got = Vec::new();
            tls.read_to_end(&mut got).await?;
            assert_eq!(got, b"hello");
            Ok(())
        }
        .await;
        let server_result = tokio::time::timeout(std::time::Duration::from_secs(10), server_task)
            .await
            .expect("server task hangs")
            .unwrap();
        if result.is_ok() {
            server_result.unwrap();
        }
        result
    }

    #[test]
    fn fingerprint_format_and_parse_round_trip() {
        let fp: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(0xA0));
        let text = format_fingerprint(&fp);
        assert_eq!(text.len(), 95);
        assert!(text.starts_with("A0:C5:EA:"), "{text}");
        assert_eq!(text, text.to_uppercase());
        assert_eq!(parse_fingerprint(&text), Some(fp));
        assert_eq!(parse_fingerprint(&text.to_lowercase()), Some(fp));
        assert_eq!(parse_fingerprint(&hex::encode(fp)), Some(fp));
        assert_eq!(parse_fingerprint(&format!("  {}\n", hex::encode_upper(fp))), Some(fp));
        assert_eq!(format_fingerprint(&[0; 32]), ["00"; 32].join(":"));
    }

    #[test]
    fn parse_fingerprint_rejects_malformed() {
        let good = format_fingerprint(&[0xAB; 32]);
        for bad in [
            String::new(),
            good[..good.len() - 3].to_owned(),       // 31 bytes
            format!("{good}:AB"),                    // 33 bytes
            good.replacen("AB", "GG", 1),            // not hex
            good.replacen("AB:AB", "ABA:B", 1),      // misplaced colon
            format!("{}:", &good[..good.len() - 3]), // empty last pair
            "ab".repeat(31),                         // too short without colons
            "ab".repeat(33),                         // too long without colons
            good.replace(':', "-"),                  // wrong separator
            format!("SHA256:{}", hex::encode([0xAB; 32])), // a label is not part of it
        ] {
            assert_eq!(parse_fingerprint(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fingerprint_matches_openssl() {
        // `openssl x509 -in cert.pem -noout -fingerprint -sha256`
        let openssl = "26:60:26:76:23:65:47:A5:CA:80:48:68:A2:2D:78:AE:\
                       52:C6:74:0D:D5:67:BB:66:03:BF:D9:81:F0:DC:C9:C6";
        assert_eq!(format_fingerprint(&fingerprint_of(&cert())), openssl);
    }

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

    #[tokio::test]
    async fn ca_file_verifies_chain_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, CERT_PEM).unwrap();
        let trust = Trust::Ca { ca_file };

        let (client, observation) = client_config(&trust).unwrap();
        handshake(server_config(KEY_PEM), client, "localhost").await.unwrap();
        assert_eq!(observation.observed(), Some(fingerprint_of(&cert())));

        let (client, _) = client_config(&trust).unwrap();
        let err = handshake(server_config(KEY_PEM), client, "wrong.example").await.unwrap_err();
        assert!(!is_pin_mismatch(&err), "{err:?}");
        let rustls_err = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(
                rustls_err,
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn ca_file_does_not_trust_other_roots() {
        // A CA file holding an unrelated certificate: the server's certificate is untrusted.
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, OTHER_CA_PEM).unwrap();
        let (client, _) = client_config(&Trust::Ca { ca_file }).unwrap();
        let err = handshake(server_config(KEY_PEM), client, "localhost").await.unwrap_err();
        let rustls_err = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(
                rustls_err,
                Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn ca_file_problems_name_the_file() {
        let dir = tempfile::tempdir().unwrap();

        let only_key = dir.path().join("key-only.pem");
        std::fs::write(&only_key, KEY_PEM).unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [only_key, empty] {
            let err = client_config(&Trust::Ca { ca_file: path.clone() }).unwrap_err();
            assert!(matches!(err, TlsSetupError::NoCertificates { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        }

        let missing = dir.path().join("missing.pem");
        let err = client_config(&Trust::Ca { ca_file: missing.clone() }).unwrap_err();
        assert!(matches!(err, TlsSetupError::ReadCaFile { .. }), "{err}");
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let err = client_config(&Trust::Ca { ca_file: garbage.clone() }).unwrap_err();
        assert!(matches!(err, TlsSetupError::BadPem { .. }), "{err}");
        assert!(err.to_string().contains(&garbage.display().to_string()), "{err}");

        let not_a_cert = dir.path().join("not-a-cert.pem");
        std::fs::write(
            &not_a_cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = client_config(&Trust::Ca { ca_file: not_a_cert.clone() }).unwrap_err();
        assert!(matches!(err, TlsSetupError::BadCaCertificate { index: 1, .. }), "{err}");
    }

    /// An unrelated self-signed CA certificate (CN=other, key [`OTHER_KEY_PEM`]), for the
    /// untrusted-root test.
    const OTHER_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIUI0cteacT4EenT7ruxFyNKxDILd0wCgYIKoZIzj0EAwIw
EDEOMAwGA1UEAwwFb3RoZXIwIBcNMjYxMTIzMDcxMTA5WhgPMjEyNjEwMzAwNzEx
MDlaMBAxDjAMBgNVBAMMBW90aGVyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
bYQzoEyL5BC050RbpM1fO/RoAk5UBMWXh4oNlcLYpb6+lER+Vijgi8Mi3uBXDJDc
V6rcX/dKaFPwLAiwnbM+VqNTMFEwHQYDVR0OBBYEFFJwAcWfjQV4XKz6qKdouGw4
g51tMB8GA1UdIwQYMBaAFFJwAcWfjQV4XKz6qKdouGw4g51tMA8GA1UdEwEB/wQF
MAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgT4DEO1Hq1nWBHh/UEBKr+Yd0c6f3qwqm
VTggBcvLe14CIQDHcjjSqeNy3kw3R4mvkPhhflw7qes7mC8DwJ34CV1v/g==
-----END CERTIFICATE-----
";
}
