//! What an operator meets, through the real `peerline-supernode` binary (issue 13): a data dir
//! it cannot write or that another supernode holds, a certificate renewed with SIGHUP, output
//! to a closed pipe, logs without colour codes when they go to a file, configuration checked in
//! full (also by `--print-config`), /metrics ready for dashboards, completions and a man page.
//!
//! Every wait has a deadline ([`WAIT`]); the supernode's output is read line by line as it
//! comes, so that a test waits for what it expects instead of sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerline_client::connection::{Connection, Endpoint};
use peerline_client::tls::Trust;
use peerline_client::{Client, ConnectOptions, Home};
use peerline_wire::{Reply, Request};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The longest any expected thing may take (a debug binary on two busy cores).
const WAIT: Duration = Duration::from_secs(30);

const BINARY: &str = env!("CARGO_BIN_EXE_peerline-supernode");

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// The supernode's flags for loopback and port 0 everywhere, with its data in `dir`.
fn loopback_args(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    ["--data-dir", &dir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
        .into_iter()
        .chain(["--stun-listen", "127.0.0.1:0"])
        .map(str::to_owned)
        .collect()
}

/// A running (or failed) `peerline-supernode`: its stdout lines and its stderr, as they come.
struct Running {
    child: Child,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_lines: mpsc::UnboundedReceiver<String>,
    /// `ws(s)://127.0.0.1:PORT` once seen.
    url: String,
    /// The admin address once seen.
    admin: String,
}

impl Running {
    fn spawn(args: &[String], configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            // Colour is decided by whether stderr is a terminal, not by this variable.
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        configure(&mut command);
        let mut child = command.spawn().expect("the supernode binary starts");
        let (out_tx, stdout) = mpsc::unbounded_channel();
        // Not piped when the test gave stdout somewhere else.
        if let Some(out) = child.stdout.take() {
            let mut out = BufReader::new(out).lines();
            tokio::spawn(async move {
                while let Ok(Some(line)) = out.next_line().await {
                    let _ = out_tx.send(line);
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err_tx, stderr_lines) = mpsc::unbounded_channel();
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        let all = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                all.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = err_tx.send(line);
            }
        });
        Self { child, stdout, stderr, stderr_lines, url: String::new(), admin: String::new() }
    }

    /// Starts and waits until it serves (its stdout says where).
    async fn serving(args: &[String], configure: impl FnOnce(&mut Command)) -> Self {
        let mut node = Self::spawn(args, configure);
        within("the supernode to say where it serves", async {
            while node.admin.is_empty() {
                let Some(line) = node.stdout.recv().await else {
                    let status = node.child.wait().await.unwrap();
                    panic!("the supernode exited ({status}): {}", node.stderr());
                };
                if let Some(url) = line.strip_prefix("listening on ") {
                    node.url = url.to_owned();
                }
                if let Some(addr) = line.strip_prefix("admin on http://") {
                    node.admin = addr.to_owned();
                }
            }
        })
        .await;
        node
    }

    /// Waits for it to exit and for the last of its stderr; its status code.
    async fn exit_code(&mut self) -> Option<i32> {
        let status = within("the supernode to exit", self.child.wait()).await.unwrap();
        within("the end of stderr", async { while self.stderr_lines.recv().await.is_some() {} })
            .await;
        status.code()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a stderr line that contains `text`.
    async fn expect_log(&mut self, text: &str) -> String {
        within(&format!("a log line with {text:?}"), async {
            loop {
                match self.stderr_lines.recv().await {
                    Some(line) if line.contains(text) => return line,
                    Some(_) => {}
                    None => panic!("stderr closed before {text:?}: {}", self.stderr()),
                }
            }
        })
        .await
    }

    /// GET on the admin listener: status line and body.
    async fn admin_get(&self, path: &str) -> (String, String) {
        let mut tcp = tokio::net::TcpStream::connect(&self.admin).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        within("the admin answer", tcp.read_to_string(&mut raw)).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    async fn stop(mut self) {
        self.signal("-TERM");
        assert_eq!(self.exit_code().await, Some(0), "{}", self.stderr());
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|uids| uids.split_whitespace().next() == Some("0"))
}

/// Issue 13: SQLite opens a database it may not write read-only without a word; the supernode
/// then served, `/healthz` said ok, and every registration failed "internal error". Now it
/// does not start, and says which file.
#[tokio::test]
async fn a_database_it_cannot_write_stops_the_start_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("peerline.db");
    let store = peerline_store_sqlite::SqliteStore::open(&db).await.unwrap();
    peerline_store::Store::close(&store).await;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let mut args = loopback_args(&data);
    // No certificate to make: what is checked is the database alone.
    args.push("--insecure-plaintext".into());
    let root = is_root();
    if root {
        // Root writes any file: run as nobody, in a data dir nobody may write, with a database
        // that only root may write (the operator's case: files made by an earlier run as root).
        use std::os::unix::fs::chown;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(&data, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut node = Running::spawn(&args, |c| {
        if root {
            c.uid(65534).gid(65534);
        }
    });
    let code = node.exit_code().await;
    let stderr = node.stderr();
    assert_ne!(code, Some(0), "it must not start: {stderr}");
    assert!(stderr.contains(&format!("{} is not writable", db.display())), "{stderr}");
}

/// Two supernodes on one data dir would corrupt each other's state (one SQLite writer each,
/// one certificate): the second is refused, told which process holds it.
#[tokio::test]
async fn a_second_supernode_on_the_same_data_dir_is_refused_with_the_first_ones_pid() {
    let dir = tempfile::tempdir().unwrap();
    let args = loopback_args(&dir.path().join("data"));
    let first = Running::serving(&args, |_| {}).await;
    let mut second = Running::spawn(&args, |_| {});
    assert_ne!(second.exit_code().await, Some(0));
    let expected = format!(
        "data dir {} is in use by another supernode (pid {})",
        dir.path().join("data").display(),
        first.child.id().unwrap()
    );
    assert!(second.stderr().contains(&expected), "{}", second.stderr());
    let (status, _) = first.admin_get("/healthz").await;
    assert!(status.contains("200"), "the first one still serves: {status}");
    first.stop().await;
}

fn write_identity(cert: &Path, key: &Path, name: &str) -> [u8; 32] {
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    let certificate = params.self_signed(&key_pair).unwrap();
    std::fs::write(cert, certificate.pem()).unwrap();
    std::fs::write(key, key_pair.serialize_pem()).unwrap();
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
    Sha256::digest(certificate.der()).into()
}

/// The fingerprint a new TLS connection is shown, and the connection (hello said).
async fn connect(url: &str, known: &Path) -> (Connection, [u8; 32]) {
    let endpoint = Endpoint::parse(url).unwrap();
    let trust = Trust::Pin { expected: None };
    let (conn, presented) =
        within("a TLS connection", Connection::connect(&endpoint, &trust, known)).await.unwrap();
    (conn, presented.fingerprint.unwrap())
}

/// A renewed certificate is taken at SIGHUP for new connections while open ones keep going;
/// a broken one is refused with an error in the log and the previous one stays.
#[tokio::test]
async fn sighup_reloads_the_certificate_keeps_connections_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = write_identity(&cert, &key, "localhost");
    let mut args = loopback_args(&dir.path().join("data"));
    args.extend(["--tls-cert".into(), cert.display().to_string()]);
    args.extend(["--tls-key".into(), key.display().to_string()]);
    let mut node = Running::serving(&args, |_| {}).await;
    let known = dir.path().join("known");
    let (open, shown) = connect(&node.url, &known).await;
    assert_eq!(shown, first);

    let renewed = write_identity(&cert, &key, "localhost");
    node.signal("-HUP");
    node.expect_log("reloaded the TLS certificate").await;
    let (_, shown) = connect(&node.url, &known.with_extension("2")).await;
    assert_eq!(shown, renewed, "new connections get the renewed certificate");
    let pong = within("ping", open.request(Request::Ping)).await.unwrap();
    assert_eq!(pong, Reply::Pong, "the connection from before the reload still works");

    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    node.signal("-HUP");
    let line = node.expect_log("still serving the previous one").await;
    assert!(line.contains("ERROR"), "{line}");
    let (_, shown) = connect(&node.url, &known.with_extension("3")).await;
    assert_eq!(shown, renewed, "a broken certificate is not taken");
    node.stop().await;
}

/// `peerline-supernode --print-config | head -1` closed the pipe before the rest was written:
/// `print!` panicked on EPIPE. Every output to stdout now ends quietly instead.
#[tokio::test]
async fn output_to_a_closed_pipe_ends_quietly_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let runs: [&[&str]; 4] = [
        &["--print-config", "--data-dir", &data],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["manpage"],
    ];
    for args in runs {
        let (reader, writer) = std::io::pipe().unwrap();
        // The reader is gone before the first byte is written: every write fails with EPIPE.
        drop(reader);
        let output = std::process::Command::new(BINARY)
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {} {stderr}", output.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }

    // A serving supernode whose stdout is gone keeps serving.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut args = loopback_args(&dir.path().join("serving"));
    args.push("--log".into());
    args.push("info".into());
    let mut node = Running::spawn(&args, |c| {
        c.stdout(writer);
    });
    let line = node.expect_log(" serving ").await;
    let admin = line.split(' ').find_map(|w| w.strip_prefix("admin=")).expect("admin address");
    node.admin = admin.to_owned();
    let (status, body) = node.admin_get("/healthz").await;
    assert!(status.contains("200"), "{status} {body}");
    node.stop().await;
}

/// Every invalid field at once, each by its TOML path with its range, from `--print-config`
/// as from a start; a valid config prints.
#[tokio::test]
async fn print_config_checks_every_field_and_reports_all_problems_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supernode.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_connections = 0\nrequests_per_second = -2.5\n\
         [sessions]\ntoken_lifetime_days = 0\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let data = dir.path().join("data").display().to_string();
    let expected = [
        "limits.max_connections: is 0; must be between 1 and 10000000",
        "limits.requests_per_second: is -2.5; must be more than 0 and at most 1000000",
        "sessions.token_lifetime_days: is 0; must be between 1 and 3650",
    ];
    for extra in [&["--print-config"][..], &["--listen", "127.0.0.1:0"][..]] {
        let output = std::process::Command::new(BINARY)
            .args(["--config", &config, "--data-dir", &data])
            .args(extra)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} must fail");
        assert!(stderr.contains("invalid configuration (3 problems)"), "{stderr}");
        for line in expected {
            assert!(stderr.contains(line), "{extra:?}: {line}\n{stderr}");
        }
        assert!(output.stdout.is_empty(), "nothing printed for an invalid config");
    }
    let output = std::process::Command::new(BINARY)
        .args(["--print-config", "--data-dir", &data, "--heartbeat-timeout-secs", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("limits.heartbeat_timeout_secs: is 4"), "flags are checked: {stderr}");
    let output = std::process::Command::new(BINARY)
        .args(["--print-config", "--data-dir", &data])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("[limits]"));
}

#[tokio::test]
async fn completions_and_a_man_page_are_printed() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(BINARY).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(run(&["completions", "bash"]).contains("--print-config"));
    assert!(run(&["completions", "zsh"]).contains("#compdef peerline-supernode"));
    assert!(run(&["completions", "fish"]).contains("complete -c peerline-supernode"));
    let man = run(&["manpage"]);
    assert!(man.contains(".TH peerline-supernode 1"), "{man}");
    assert!(man.contains("tls\\-cert"), "the flags are documented: {man}");
}

/// The metric families of a fresh supernode, after one registration and one login: every family
/// has HELP and TYPE, counters are there at 0 before their first event, the build is named,
/// process metrics are there, and the login latency histogram has its sample. The log says
/// what happened at info level, without the password or the token, and without colour codes.
#[tokio::test]
async fn metrics_are_described_start_at_zero_and_time_logins_and_logs_say_so_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let args = loopback_args(&dir.path().join("data"));
    let mut node = Running::serving(&args, |_| {}).await;

    let (_, fresh) = node.admin_get("/metrics").await;
    for zero in [
        "peerline_registrations_total 0",
        "peerline_connections_accepted_total 0",
        "peerline_logins_total{method=\"password\",result=\"ok\"} 0",
        "peerline_request_errors_total{code=\"internal\"} 0",
    ] {
        assert!(fresh.lines().any(|l| l == zero), "{zero} missing:\n{fresh}");
    }

    let password = "correct horse battery staple";
    let home = Home::open(&dir.path().join("home")).unwrap();
    let options =
        ConnectOptions { url: node.url.clone(), ca_file: None, device_name: "laptop".into() };
    let mut client = within("connect", Client::connect(&options, home)).await.unwrap();
    within("register", client.register("alice", None, password)).await.unwrap();
    let reply = within("login", client.login_with_password("alice", password)).await.unwrap();
    let Reply::LoggedIn { token, .. } = reply else { panic!("{reply:?}") };

    let (status, text) = node.admin_get("/metrics").await;
    assert!(status.contains("200"), "{status}");
    let families = check_families(&text);
    for needed in [
        "peerline_build_info",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "peerline_request_seconds",
    ] {
        assert!(families.contains(&needed.to_owned()), "{needed} missing:\n{text}");
    }
    let build = format!("peerline_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l == build), "{text}");
    let logins = "peerline_login_seconds_count{method=\"password\",result=\"ok\"} 1";
    assert!(text.lines().any(|l| l == logins), "a login is timed:\n{text}");
    assert!(text.contains("# TYPE peerline_login_seconds histogram"), "{text}");
    assert!(text.lines().any(|l| l == "peerline_registrations_total 1"), "{text}");

    let registered = node.expect_log("account registered").await;
    assert!(registered.contains("INFO") && registered.contains("alice"), "{registered}");
    let logged_in = node.expect_log("logged in").await;
    assert!(logged_in.contains("INFO") && logged_in.contains("method=\"password\""), "{logged_in}");
    let stderr = node.stderr();
    assert!(!stderr.contains('\x1b'), "colour codes in a log that is not a terminal:\n{stderr}");
    for secret in [password, token.as_str()] {
        assert!(!stderr.contains(secret), "a secret in the log:\n{stderr}");
    }
    drop(client);
    node.stop().await;
}

/// The families in a Prometheus text page; fails the test if one lacks `# HELP` or `# TYPE`,
/// or a sample belongs to no declared family.
fn check_families(text: &str) -> Vec<String> {
    let mut helped = Vec::new();
    let mut typed: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            typed.push((name.to_owned(), kind.to_owned()));
        } else if !line.is_empty() {
            let sample = line.split(['{', ' ']).next().unwrap();
            let family = typed.iter().find(|(name, kind)| {
                sample == name
                    || (kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| sample.strip_suffix(s) == Some(name)))
            });
            assert!(family.is_some(), "{sample} has no # TYPE:\n{text}");
        }
    }
    for (name, _) in &typed {
        assert!(helped.contains(name), "{name} has no # HELP:\n{text}");
    }
    typed.into_iter().map(|(name, _)| name).collect()
}
