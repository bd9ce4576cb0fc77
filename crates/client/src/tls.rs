//! TLS client configuration for connecting to a supernode: trust on first use with certificate
//! pinning (the default, for self-hosted supernodes with self-signed certificates), or ordinary
//! WebPKI verification against a CA file.
//!
//! In pin mode the identity of a supernode is the SHA-256 of its certificate, not its name: the
//! verifier records the certificate the server presented in a [`PinObservation`] and rejects it
//! with a [`PinMismatch`] if it differs from the pinned one. The handshake signature is still
//! verified, so an attacker who copies the certificate but lacks its key is rejected too.
//!
//! This module builds the config from a [`Trust`]; `verifier` holds the certificate verifier and
//! the pin types it reports through, `fingerprint` the SHA-256 fingerprints and their text form.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod fingerprint;
#[cfg(test)]
mod test_server;
mod verifier;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub use fingerprint::{fingerprint_of, format_fingerprint, parse_fingerprint};
use verifier::{Check, SupernodeVerifier};
pub use verifier::{PinMismatch, PinObservation, is_pin_mismatch, pin_mismatch};

/// ALPN protocol offered to the supernode: the WebSocket upgrade runs over HTTP/1.1.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

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

/// Why the trust of a connection could not be set up: a CA file that cannot be used, or a
/// fingerprint to expect that contradicts the other trust settings. Nothing was sent when these
/// are returned.
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
    /// A fingerprint to expect and a CA file were both given. They exclude each other rather
    /// than combine: a CA is for certificates that are replaced (renewed) without telling the
    /// clients, which a fingerprint would then refuse.
    #[error(
        "a certificate fingerprint to expect and a CA file ({}) were both given; use one: the \
         fingerprint for a supernode with a self-signed certificate, the CA file for one whose \
         certificate a CA signed",
        ca_file.display()
    )]
    FingerprintWithCa {
        /// The CA file.
        ca_file: PathBuf,
    },
    /// A fingerprint to expect was given for a plain `ws://` supernode, which has no certificate.
    #[error(
        "a certificate fingerprint was given, but {url} is plain ws:// without a certificate; \
         use its wss:// URL"
    )]
    FingerprintWithoutTls {
        /// The supernode URL.
        url: String,
    },
    /// The fingerprint given to expect is not the one the network is pinned to. Neither is
    /// trusted over the other: the user must find out which is right.
    #[error(
        "the network of {network} is pinned to another certificate than the fingerprint \
         given.\n  pinned: {pinned}\n  given:  {given}\nNothing was sent, and the pin is kept. Check the \
         fingerprint with the supernode's operator. If the certificate really changed, replace \
         the pin (kept in {}) with `peerline trust --forget --fingerprint {given}`.",
        networks_file.display()
    )]
    PinConflict {
        /// The supernode URLs that name the network.
        network: String,
        /// The network's pin (`AB:CD:…`).
        pinned: String,
        /// The fingerprint given (`AB:CD:…`).
        given: String,
        /// The file that keeps the pin (`networks.json` in the home).
        networks_file: PathBuf,
    },
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use rustls::CertificateError;

    use super::*;
    use test_server::{CERT_PEM, KEY_PEM, OTHER_CA_PEM, cert, handshake, server_config};

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
}
