//! Test fixtures for the TLS tests: a self-signed certificate for `localhost` with its key, an
//! unrelated key and CA, and a loopback TLS server to run a handshake against.

// Test code: a panic is a test failure, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Self-signed P-256 certificate for `localhost` / 127.0.0.1, valid 2024–2124, CA:FALSE so
/// WebPKI accepts it as an end-entity certificate when it is also its own trust anchor.
/// Made with `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes
/// -subj /CN=localhost` and `openssl ca -selfsign -startdate 20240101000000Z -enddate
/// 21240101000000Z` with extensions `basicConstraints=critical,CA:FALSE` and
/// `subjectAltName=DNS:localhost,IP:127.0.0.1` (plain `openssl req -x509` marks it CA:TRUE,
/// which WebPKI rejects as an end-entity certificate).
pub(super) const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
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
pub(super) const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAiB9rBhUavNvMeuB
AUxzE5KcYgzg7uDPPCaD4db4ekyhRANCAARG4hUXjbu1K55zkd13DnC+rCVfCpI0
IoWV9ZNYp3Oy/7HKkxtXVgN1k3rTDufO7UWrQvWaYGQXMm5l02k0IsDE
-----END PRIVATE KEY-----
";

/// An unrelated P-256 key: a server presenting [`CERT_PEM`] but signing with this key does
/// not own the certificate.
pub(super) const OTHER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDC3xRb2PnlplajNa
FWlwLTVa6gDdZI+Qsz8tXO4KIXOhRANCAARthDOgTIvkELTnRFukzV879GgCTlQE
xZeHig2Vwtilvr6URH5WKOCLwyLe4FcMkNxXqtxf90poU/AsCLCdsz5W
-----END PRIVATE KEY-----
";

pub(super) fn cert() -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(CERT_PEM.as_bytes()).unwrap()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub(super) fn server_config(key_pem: &str) -> Arc<rustls::ServerConfig> {
    server_config_with(key_pem, rustls::DEFAULT_VERSIONS)
}

pub(super) fn server_config_with(
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
pub(super) async fn handshake(
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

/// An unrelated self-signed CA certificate (CN=other, key [`OTHER_KEY_PEM`]), for the
/// untrusted-root test.
pub(super) const OTHER_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
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
