//! A nats-server with a TLS WebSocket port and an authorization token: the established server
//! that `peerline-loadgen hold-nats` measures beside a supernode (issue 15's comparison), started
//! for the load generator's tests. JetStream is off: the comparison holds plain connections.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::nats::{START_TIMEOUT, binary, free_port};

/// A running nats-server with a `websocket` block over TLS; killed on drop.
pub struct NatsWebSocket {
    child: Child,
    /// Holds the config, certificate and log.
    _dir: TempDir,
    /// `wss://127.0.0.1:PORT`.
    pub url: String,
    /// The token every client must send in its `CONNECT`.
    pub token: String,
}

impl NatsWebSocket {
    /// Starts one on free loopback ports with a fresh self-signed certificate.
    pub fn start() -> anyhow::Result<NatsWebSocket> {
        let binary = binary()?;
        let dir = tempfile::Builder::new().prefix("peerline-nats-ws-").tempdir()?;
        let key = rcgen::KeyPair::generate().context("generating a TLS key")?;
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])?.self_signed(&key)?;
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        let token = format!("t{:016x}", rand_u64());
        let (port, ws_port) = (free_port()?, free_port()?);
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:{port}\"\n\
                 authorization {{ token: \"{token}\" }}\n\
                 websocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  \
                 tls {{ cert_file: {cert:?}, key_file: {key:?} }}\n}}\n",
                cert = path(cert_path)?,
                key = path(key_path)?,
            ),
        )?;
        let log_path = dir.path().join("nats.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(status) = child.try_wait()? {
                bail!("nats-server exited at start ({status}); its log:\n{log}");
            }
            if log.contains("Server is ready") && TcpStream::connect(("127.0.0.1", ws_port)).is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("nats-server did not start within {START_TIMEOUT:?}; its log:\n{log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(NatsWebSocket { child, _dir: dir, url: format!("wss://127.0.0.1:{ws_port}"), token })
    }

    /// The server's process id, for its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsWebSocket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path(p: PathBuf) -> anyhow::Result<String> {
    p.into_os_string().into_string().map_err(|p| anyhow::anyhow!("{p:?} is not UTF-8"))
}

/// A token no other test guesses; not a secret.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
