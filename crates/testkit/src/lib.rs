//! Test kit for end-to-end tests: starts the real `peerline-supernode` binary on loopback with
//! its own data directory and ports, runs the real `peerline` CLI with its own home directory,
//! and reads JSON lines from long-running commands with timeouts instead of sleeps.
//!
//! Binaries are found next to the test executable (`target/<profile>/`), or in
//! `$PEERLINE_BIN_DIR`. Build them first: `cargo build --bins` (the test scripts do).
#![allow(clippy::missing_panics_doc)]

pub mod cluster;
pub mod nats;
pub mod nats_websocket;
pub mod netlab;
pub mod postgres;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tempfile::TempDir;

/// Where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PEERLINE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

/// Path of one binary, with a message saying how to build it when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found; build the binaries first with `cargo build --bins` (or set PEERLINE_BIN_DIR)",
        path.display()
    );
    path
}

/// A running supernode process.
pub struct Supernode {
    child: Child,
    /// Its data directory (kept across restarts).
    pub data_dir: PathBuf,
    _temp: Option<TempDir>,
    /// `wss://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT` of the client listener.
    pub addr: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin_url: String,
    /// The fingerprint it printed.
    pub fingerprint: Option<String>,
    extra_args: Vec<String>,
    stderr_path: PathBuf,
    netns: Option<String>,
}

impl Supernode {
    /// Starts a supernode with a fresh temporary data directory.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts one with extra flags.
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().join("data");
        let mut node = Self::spawn(&dir, "127.0.0.1:0", extra, None)?;
        node._temp = Some(temp);
        Ok(node)
    }

    /// Starts one inside a NAT-lab host, on its public address: clients on port 7443, STUN on
    /// port 3478.
    pub fn start_in(host: &netlab::Host, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_in_on(host, 7443, extra)
    }

    /// Like [`Supernode::start_in`], with clients on `port` (443 for a network that lets only
    /// HTTPS out).
    pub fn start_in_on(host: &netlab::Host, port: u16, extra: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().join("data");
        let mut node = Self::spawn(&dir, &format!("{}:{port}", host.ip), extra, Some(host))?;
        node._temp = Some(temp);
        Ok(node)
    }

    /// The self-signed certificate and key it made in its data directory (PEM files), e.g. for
    /// a TURN server that clients verify against the supernode's pin.
    pub fn tls_files(&self) -> (PathBuf, PathBuf) {
        let dir = self.data_dir.join("tls");
        (dir.join("cert.pem"), dir.join("key.pem"))
    }

    /// Starts one with a fresh data directory on a given client address (e.g. to take over
    /// the port of a supernode that was stopped).
    pub fn start_at(listen: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().join("data");
        let mut node = Self::spawn(&dir, listen, extra, None)?;
        node._temp = Some(temp);
        Ok(node)
    }

    fn spawn(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        host: Option<&netlab::Host>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let stderr_path = data_dir.join("supernode.stderr.log");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_path)?;
        let stun = host.map_or("127.0.0.1:0".to_owned(), |h| format!("{}:3478", h.ip));
        let mut command = match host {
            Some(h) => h.command(bin("peerline-supernode")),
            None => Command::new(bin("peerline-supernode")),
        };
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", listen, "--admin-listen", "127.0.0.1:0", "--stun-listen", &stun])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting peerline-supernode")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut url, mut admin, mut fingerprint) = (None, None, None);
        while url.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    bail!("supernode did not start within 30 s; stderr:\n{log}");
                }
            };
            if let Some(rest) = line.strip_prefix("listening on ") {
                url = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("admin on ") {
                admin = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("TLS certificate SHA-256 fingerprint: ") {
                fingerprint = Some(rest.trim().to_owned());
            }
        }
        let url = url.unwrap_or_default();
        let addr = url.split("://").nth(1).unwrap_or_default().to_owned();
        Ok(Self {
            child,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            url,
            addr,
            admin_url: admin.unwrap_or_default(),
            fingerprint,
            extra_args: extra.iter().map(|s| (*s).to_owned()).collect(),
            stderr_path,
            netns: host.map(|h| h.netns.clone()),
        })
    }

    /// Its process id (for its memory and CPU in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL (no chance to flush anything) and waits for it to die.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits; returns the exit code.
    pub fn terminate(&mut self) -> anyhow::Result<Option<i32>> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!("supernode did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the same supernode again (same data dir, same client port).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        if self.netns.is_some() {
            anyhow::bail!("restart is not supported inside the NAT lab");
        }
        let mut fresh = Self::spawn(&self.data_dir, &self.addr, &extra, None)?;
        fresh._temp = self._temp.take();
        std::mem::swap(self, &mut fresh);
        Ok(())
    }

    /// The supernode's stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// GET on the admin listener; returns the body.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        let addr = self.admin_url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response)?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Ok(body)
    }
}

impl Drop for Supernode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One CLI user: a home directory and a password.
pub struct User {
    /// Username.
    pub name: String,
    /// Password.
    pub password: String,
    home: TempDir,
    url: String,
    host: Option<netlab::Host>,
    env: Vec<(String, String)>,
}

/// A finished CLI run.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    /// Asserts success and returns the JSON.
    pub fn ok_json(&self) -> Value {
        assert_eq!(
            self.code,
            Some(0),
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self.json()
    }

    /// Asserts failure and returns the JSON error code.
    pub fn error_code(&self) -> String {
        assert_ne!(self.code, Some(0), "command should have failed:\n{}", self.stdout);
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

impl User {
    /// A new user for this supernode (nothing registered yet).
    pub fn new(name: &str, node: &Supernode) -> Self {
        Self {
            name: name.to_owned(),
            password: format!("{name}-secret-pw"),
            home: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
            url: node.url.clone(),
            host: None,
            env: Vec::new(),
        }
    }

    /// A new user whose CLI runs inside a NAT-lab host.
    pub fn new_in(name: &str, node: &Supernode, host: &netlab::Host) -> Self {
        Self { host: Some(host.clone()), ..Self::new(name, node) }
    }

    /// Makes `self` and `other` accepted contacts (request and accept).
    pub fn befriend(&self, other: &User) {
        self.ok(&["contacts", "add", &other.name]);
        other.ok(&["contacts", "accept", &self.name]);
    }

    /// This user's home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Points this user at another supernode URL.
    pub fn set_url(&mut self, url: &str) {
        url.clone_into(&mut self.url);
    }

    fn command(&self) -> Command {
        let mut cmd = match &self.host {
            Some(h) => h.command(bin("peerline")),
            None => Command::new(bin("peerline")),
        };
        cmd.env("PEERLINE_HOME", self.home.path())
            .env("PEERLINE_SUPERNODE", &self.url)
            .env("PEERLINE_PASSWORD", &self.password)
            .env_remove("PEERLINE_CA")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        cmd
    }

    /// Sets an environment variable for this user's commands (e.g. `PEERLINE_LOG`).
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `peerline --json ARGS...` to completion (60 s at most).
    pub fn run(&self, args: &[&str]) -> Run {
        let mut child = self
            .command()
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning peerline: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let Output { status, stdout, stderr } =
            child.wait_with_output().unwrap_or_else(|e| panic!("waiting for peerline: {e}"));
        Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// `peerline ARGS...` as a person runs it: human output (no `--json`), and the default log
    /// filter (no `PEERLINE_LOG`/`RUST_LOG` from the test's environment).
    pub fn human_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command();
        cmd.env_remove("PEERLINE_LOG").env_remove("RUST_LOG").args(args);
        cmd
    }

    /// Runs `peerline ARGS...` (human output, no `--json`) and asserts it succeeded; returns
    /// its standard output.
    pub fn run_text(&self, args: &[&str]) -> String {
        let output =
            self.human_command(args).output().unwrap_or_else(|e| panic!("spawning peerline: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "peerline {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs a command and asserts it succeeded; returns its JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        self.run(args).ok_json()
    }

    /// Another install (own home, own device key) of the same account, logged in.
    pub fn another_device(&self) -> Self {
        let device = Self {
            name: self.name.clone(),
            password: self.password.clone(),
            home: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
            url: self.url.clone(),
            host: self.host.clone(),
            env: self.env.clone(),
        };
        device.ok(&["login", &device.name]);
        device
    }

    /// Registers and logs in.
    pub fn register(&self) -> Value {
        self.ok(&["register", &self.name])
    }

    /// Starts `peerline --json online` and waits for it to be connected.
    pub fn online(&self) -> Online {
        self.online_with(&[])
    }

    /// Starts `peerline --json online EXTRA...` (e.g. `--auto-answer --play F`) and waits for it
    /// to be connected.
    pub fn online_with(&self, extra: &[&str]) -> Online {
        let mut args = vec!["online"];
        args.extend_from_slice(extra);
        let mut online = self.start(&args);
        online.expect(|v| v["event"] == "online", "the first line (online)");
        online
    }

    /// Starts `peerline --json ARGS...` in the background, reading its JSON lines.
    pub fn start(&self, args: &[&str]) -> Online {
        let mut child = self
            .command()
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning peerline online: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Online { child, lines: rx, seen: Vec::new() }
    }
}

/// A running `peerline online`.
pub struct Online {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every JSON line received so far.
    pub seen: Vec<Value>,
}

impl Online {
    /// Waits (10 s at most) for a line matching `pred`; panics with what was seen otherwise.
    pub fn expect(&mut self, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
        self.expect_within(Duration::from_secs(10), pred, what)
    }

    /// Like [`Online::expect`] with a custom timeout.
    pub fn expect_within(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
        what: &str,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let value: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("online printed non-JSON line {line:?}: {e}"));
                    self.seen.push(value.clone());
                    if pred(&value) {
                        return value;
                    }
                }
                Err(_) => {
                    let stderr = self.stop();
                    panic!("timed out waiting for {what}; saw {:#?}\nstderr: {stderr}", self.seen);
                }
            }
        }
    }

    /// Collects lines for `window` and returns everything seen so far.
    pub fn drain_for(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        while let Ok(line) =
            self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Ok(v) = serde_json::from_str(&line) {
                self.seen.push(v);
            }
        }
        self.seen.clone()
    }

    /// Waits (up to `timeout`) for the process to exit by itself; returns its exit code and
    /// stderr, having read every line it printed into [`Online::seen`].
    pub fn wait(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            if let Ok(v) = serde_json::from_str(&line) {
                self.seen.push(v);
            }
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let _ = self.child.wait();
        (code, stderr)
    }

    /// Kills the process; returns its stderr.
    pub fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let _ = self.child.wait();
        stderr
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The secret the lab's supernode and coturn share.
const LAB_TURN_SECRET: &str = "lab-secret-0123456789abcdef0123456789";

/// A NAT lab for calls: the supernode (clients on TCP 443, STUN on UDP 3478) and a coturn relay
/// (UDP and TCP 3478, TLS 443 with the supernode's certificate, the shipped config) on public
/// addresses, and two clients on networks of the given kinds (`None`: a public address).
pub struct RelayLab {
    /// The supernode, with the relay in its `[turn]` config.
    pub node: Supernode,
    /// The relay's host.
    pub relay_host: netlab::Host,
    /// The relay.
    pub relay: netlab::TurnRelay,
    /// The first client's host.
    pub a: netlab::Host,
    /// The second client's host.
    pub b: netlab::Host,
    /// The first client's NAT router, if it has one.
    pub a_router: Option<netlab::Router>,
    /// The second client's NAT router, if it has one.
    pub b_router: Option<netlab::Router>,
    _config: tempfile::NamedTempFile,
    _lab: netlab::Lab,
}

impl RelayLab {
    /// Builds the lab and starts the servers.
    pub fn new(a: Option<netlab::NatKind>, b: Option<netlab::NatKind>) -> anyhow::Result<Self> {
        Self::with_config(a, b, "")
    }

    /// Like [`RelayLab::new`], with more supernode config (TOML sections other than `[turn]`).
    pub fn with_config(
        a: Option<netlab::NatKind>,
        b: Option<netlab::NatKind>,
        extra_toml: &str,
    ) -> anyhow::Result<Self> {
        let mut lab = netlab::Lab::new()?;
        let srv = lab.public_host("srv")?;
        let relay_host = lab.public_host("relay")?;
        let mut host = |name: &str, kind: Option<netlab::NatKind>| match kind {
            None => lab.public_host(name).map(|h| (h, None)),
            Some(kind) => lab.natted_host_with_router(name, kind).map(|(h, r)| (h, Some(r))),
        };
        let ((a, a_router), (b, b_router)) = (host("a", a)?, host("b", b)?);
        let config = tempfile::NamedTempFile::new()?;
        let r = &relay_host.ip;
        std::fs::write(
            config.path(),
            format!(
                "[turn]\nstatic_auth_secret = \"{LAB_TURN_SECRET}\"\nurls = [\
                 \"turn:{r}:3478?transport=udp\", \"turn:{r}:3478?transport=tcp\", \
                 \"turns:{r}:443?transport=tcp\"]\n\
                 # The NAT benchmarks place many calls a minute from one user.\n\
                 credentials_per_minute = 600.0\n{extra_toml}"
            ),
        )?;
        let config_path = config.path().to_str().context("temp path is not UTF-8")?;
        let node = Supernode::start_in_on(&srv, 443, &["--config", config_path])?;
        let (cert, key) = node.tls_files();
        // The shipped config refuses documentation ranges, which the lab's internet uses.
        let relay = netlab::TurnRelay::start(
            &relay_host,
            LAB_TURN_SECRET,
            &cert,
            &key,
            "203.0.113.0-203.0.113.255",
        )
        .context("starting coturn in the lab")?;
        Ok(RelayLab {
            node,
            relay_host,
            relay,
            a,
            b,
            a_router,
            b_router,
            _config: config,
            _lab: lab,
        })
    }
}
