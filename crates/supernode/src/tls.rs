//! The supernode's TLS identity: an operator's certificate, or a self-signed one made on first
//! start and kept in the data directory, so that its fingerprint (which clients pin) is stable.
//! [`TlsReloader`] reads it again (on SIGHUP) for the handshakes that follow, without touching
//! open connections.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// A loaded TLS identity.
pub struct TlsIdentity {
    /// The server config for rustls (aws-lc-rs provider, ALPN http/1.1).
    pub server_config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate, as `AB:CD:...`.
    pub fingerprint: String,
    /// Where the certificate came from.
    pub cert_path: PathBuf,
    /// Whether it was created just now.
    pub created: bool,
}

/// Swaps the certificate that new TLS handshakes present: a renewed certificate is taken
/// without a restart, and connections already open keep going on theirs.
#[derive(Clone)]
pub struct TlsReloader {
    config: Config,
    live: RustlsConfig,
}

impl TlsReloader {
    /// A reloader of `config`'s certificate into `live` (what the listener hands handshakes).
    pub fn new(config: Config, live: RustlsConfig) -> Self {
        Self { config, live }
    }

    /// Reads the certificate and key again and, if they load and match, serves them from the
    /// next handshake on; returns the new fingerprint. On an error the old certificate stays.
    pub fn reload(&self) -> anyhow::Result<String> {
        let identity = load_identity(&self.config)?;
        self.live.reload_from_config(identity.server_config);
        Ok(identity.fingerprint)
    }
}

/// Formats a SHA-256 digest as upper-case hex pairs joined by colons (what clients show and pin).
pub fn format_fingerprint(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Loads the configured certificate or the generated one, creating it if needed.
pub fn load_identity(config: &Config) -> anyhow::Result<TlsIdentity> {
    let (cert_path, key_path, created) = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ => {
            let dir = config.data_dir.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            let created = if c.exists() && k.exists() {
                false
            } else {
                generate(&dir, &c, &k, &config.tls_names)?;
                true
            };
            (c, k, created)
        }
    };
    let certs = read_certs(&cert_path)?;
    warn_if_others_can_read(&key_path);
    let key = read_key(&key_path)?;
    let leaf = certs.first().context("certificate file holds no certificate")?;
    let fingerprint = format_fingerprint(&Sha256::digest(leaf.as_ref()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| format!("certificate {} does not match its key", cert_path.display()))?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsIdentity { server_config: Arc::new(server_config), fingerprint, cert_path, created })
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path, extra: &[String]) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    // The key's directory is the service user's alone, whatever the umask.
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    names.extend(extra.iter().cloned());
    let key = rcgen::KeyPair::generate().context("generating TLS key")?;
    let mut params =
        rcgen::CertificateParams::new(names).context("building the certificate's names")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Peerline supernode");
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let cert = params.self_signed(&key).context("signing the self-signed certificate")?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_private(cert_path, cert.pem().as_bytes())?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    // `mode` applies only to a file created now: a key file left behind with wider permissions
    // (the certificate was missing, so both are made again) is narrowed before the key is in it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} readable by its owner only", path.display()))?;
    }
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// An operator's key readable by every user of the machine is a leak waiting to happen; say so
/// (the supernode still starts: the operator may have reasons, and the key is theirs).
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o004 != 0
        {
            tracing::warn!(
                key = %path.display(),
                "the TLS private key is readable by every user on this machine; \
                 chmod 600 it (under systemd, pass it with LoadCredential=, see deploy/)"
            );
        }
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let data =
        std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing PEM certificate {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} contains no PEM certificate", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path).with_context(|| format!("reading key {}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .with_context(|| format!("parsing PEM key {}", path.display()))?
        .with_context(|| format!("{} contains no PEM private key", path.display()))
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_generated_key_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().join("data"), ..Config::default() };
        let identity = load_identity(&config).unwrap();
        assert!(identity.created);
        let tls = config.data_dir.join("tls");
        assert_eq!(mode(&tls.join("key.pem")), 0o600, "key.pem");
        assert_eq!(mode(&tls), 0o700, "the tls directory");
    }

    /// A key file left world-readable (by a copy, a restore, an old version) while the
    /// certificate is missing: the key made in its place is not readable by others.
    #[test]
    fn a_regenerated_key_does_not_keep_a_leftover_files_wide_mode() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().join("data"), ..Config::default() };
        let tls = config.data_dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("key.pem"), "stale").unwrap();
        std::fs::set_permissions(tls.join("key.pem"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let identity = load_identity(&config).unwrap();
        assert!(identity.created, "a missing certificate means a new identity");
        assert_eq!(mode(&tls.join("key.pem")), 0o600);
    }
}
