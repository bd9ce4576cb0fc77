//! Throwaway PostgreSQL servers for tests: each [`TestPostgres`] is a private cluster in its own
//! temp dir, listening on a free loopback port, stopped (by the pid it started) when dropped.
//!
//! Starting one is fast because `initdb` runs once per machine and PostgreSQL version: its output
//! is kept as a template under the cargo target dir (`target/pg-template-15`, guarded by a lock
//! file so that concurrent test processes neither race nor rebuild it), and every server starts
//! from a copy of it. Servers run with `fsync=off`: fine for tests, never for durability
//! benchmarks.
//!
//! PostgreSQL refuses to run as root, and tests here run as root: then every PostgreSQL program
//! runs as the `postgres` user (through `runuser`) and the data directories are owned by it.
//! Without the binaries (`/usr/lib/postgresql/*/bin`), starting fails with a message that says to
//! run `scripts/setup`; tests never skip silently.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

/// The superuser `initdb` creates; servers trust every local connection.
pub const USER: &str = "peerline";

/// Where Debian's `postgresql` package installs each major version's programs.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// What the template was made with; a template with another stamp is rebuilt. Change it whenever
/// the `initdb` arguments change.
const TEMPLATE_STAMP: &str = "peerline test template v1: initdb -A trust -U peerline -E UTF8 \
                              --no-locale";

/// The file in a template directory that holds [`TEMPLATE_STAMP`]; written last, so a template
/// without it is incomplete.
const STAMP_FILE: &str = "peerline-template.stamp";

/// How long `pg_ctl` may take to bring a server up (crash recovery after `kill9` included).
const START_TIMEOUT_SECS: u32 = 60;

/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A PostgreSQL server started for a test, with its own data directory and port.
///
/// Dropping it stops the server (fast shutdown, then `SIGKILL` of the postmaster and its
/// children if that hangs) and deletes the data directory. Processes are only ever signalled by
/// the pid this server started (and its children's), never by name.
pub struct TestPostgres {
    /// The PostgreSQL programs (`initdb`, `pg_ctl`, `postgres`, `psql`).
    bin: PathBuf,
    /// Holds `data/` (the cluster), the server's log and its Unix socket.
    dir: TempDir,
    /// TCP port on 127.0.0.1.
    port: u16,
    /// The postmaster's pid while the server runs.
    pid: Option<u32>,
    /// The `postgres` account to run programs as, when this process is root.
    run_as: Option<Account>,
}

/// A Unix account's ids.
#[derive(Debug, Clone, Copy)]
struct Account {
    uid: u32,
    gid: u32,
}

impl TestPostgres {
    /// Starts a fresh, empty server (databases `postgres`, `template1`; superuser [`USER`]) on a
    /// free loopback port.
    pub fn start() -> anyhow::Result<TestPostgres> {
        let (bin, version) = find_binaries()?;
        let run_as = if is_root()? { Some(postgres_account()?) } else { None };
        let dir = tempfile::Builder::new().prefix("peerline-pg-").tempdir()?;
        let data = dir.path().join("data");
        let (template, lock) = template(&bin, &version, run_as)?;
        copy_template(&template, &data, run_as)?;
        drop(lock);
        if let Some(account) = run_as {
            // The server writes its log and socket here, and must be able to reach data/.
            std::os::unix::fs::chown(dir.path(), Some(account.uid), Some(account.gid))
                .context("handing the server's temp dir to the postgres user")?;
        }

        let mut server = TestPostgres { bin, dir, port: 0, pid: None, run_as };
        // A free port can be taken by someone else between the probe and the server's bind:
        // try a few.
        let mut last_error = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
            .context("starting a test PostgreSQL server")
    }

    /// The URL of database `db` on this server (no password: the server trusts local users).
    pub fn url(&self, db: &str) -> String {
        // sslmode=disable: the server has no TLS, so skip sqlx's attempt at it per connection.
        format!("postgres://{USER}@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// Creates an empty database and returns its URL. `name` must be a plain lower-case
    /// identifier (letters, digits, `_`).
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let plain = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain {
            bail!("database name {name:?} is not a plain identifier ([a-z_][a-z0-9_]*)");
        }
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    /// Runs SQL with `psql` in database `db` and returns what it printed (unaligned, tuples
    /// only); fails with psql's error output if a statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", db, "-c", sql])
            .output()
            .context("running psql")?;
        checked(out, &format!("psql -c {sql:?}"))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Everything the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: open sessions are disconnected, everything committed is
    /// kept). The data directory stays for [`TestPostgres::restart`]. Stopping a stopped server
    /// does nothing.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(pid) = self.pid.take() else { return Ok(()) };
        if !self.is_our_postmaster(pid) {
            return Ok(());
        }
        signal("-INT", &[pid])?;
        if wait_gone(&[pid], STOP_TIMEOUT) {
            return Ok(());
        }
        // A shutdown that hangs must not hang the test.
        kill_server(pid)?;
        bail!("PostgreSQL (pid {pid}) ignored a fast shutdown for {STOP_TIMEOUT:?}; killed it")
    }

    /// Kills the server and all its processes at once with `SIGKILL`, as a crash would;
    /// committed data survives (crash recovery replays the log at the next start).
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let Some(pid) = self.pid.take() else { return Ok(()) };
        if !self.is_our_postmaster(pid) {
            return Ok(());
        }
        kill_server(pid)
    }

    /// Starts the server again on the same port and data directory (after [`TestPostgres::stop`]
    /// or [`TestPostgres::kill9`]; a running server is stopped first). URLs stay valid.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        // The port may still be held for a moment by the old server's sockets (or the old
        // shared memory by a process on its way out): retry for a while.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.context("restarting")),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The cluster directory.
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log file (inside the temp dir, where the server may write).
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the postmaster with `pg_ctl` and waits until it accepts connections.
    fn launch(&mut self) -> anyhow::Result<()> {
        let options = format!(
            "-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB",
            port = self.port,
            socket_dir = self.dir.path().display(),
        );
        let data = self.data();
        let log = self.log_path();
        let timeout = START_TIMEOUT_SECS.to_string();
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", &timeout, "-o", &options, "start"])
            .output()
            .context("running pg_ctl start")?;
        if let Err(e) = checked(out, "pg_ctl start") {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(e.context(format!(
                "PostgreSQL did not start on port {}; its log ends:\n{}",
                self.port,
                tail.join("\n")
            )));
        }
        let pid_file = fs::read_to_string(data.join("postmaster.pid"))
            .context("reading postmaster.pid of the server just started")?;
        let pid = pid_file
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .context("postmaster.pid does not start with a pid")?;
        self.pid = Some(pid);
        Ok(())
    }

    /// Whether `pid` is still the postmaster of this server (a pid can be reused once the
    /// process is gone; never signal someone else's process).
    fn is_our_postmaster(&self, pid: u32) -> bool {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
        let data = self.data();
        cmdline
            .split(|&b| b == 0)
            .any(|arg| Path::new(std::str::from_utf8(arg).unwrap_or("")) == data)
    }

    /// A command for one of the PostgreSQL programs, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        command(&self.bin, program, self.run_as)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("stopping the test PostgreSQL server: {e:#}");
        }
    }
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// A command for `program` in `bin`, through `runuser -u postgres` when `run_as` is set.
fn command(bin: &Path, program: &str, run_as: Option<Account>) -> Command {
    let path = bin.join(program);
    match run_as {
        Some(_) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        }
        None => Command::new(path),
    }
}

/// Stdout of a finished command, or an error with its stderr.
fn checked(out: Output, what: &str) -> anyhow::Result<String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    bail!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )
}

/// The newest PostgreSQL's programs directory and its major version.
fn find_binaries() -> anyhow::Result<(PathBuf, String)> {
    find_binaries_in(Path::new(DEBIAN_PG_ROOT))
}

/// [`find_binaries`] under `root` (Debian's layout: `root/<major>/bin/`).
fn find_binaries_in(root: &Path) -> anyhow::Result<(PathBuf, String)> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(major) = name.to_str().and_then(|n| n.parse().ok()) else { continue };
            let bin = entry.path().join("bin");
            let complete = ["initdb", "pg_ctl", "postgres", "psql"]
                .iter()
                .all(|program| bin.join(program).is_file());
            if complete {
                found.push((major, bin));
            }
        }
    }
    match found.into_iter().max_by_key(|(major, _)| *major) {
        Some((major, bin)) => Ok((bin, major.to_string())),
        None => bail!(
            "PostgreSQL is not installed (no {}/*/bin with initdb, pg_ctl, postgres and psql): \
             run `scripts/setup`, which installs the Debian `postgresql` package",
            root.display()
        ),
    }
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> anyhow::Result<bool> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).context("no Uid: line")?;
    // "Uid: real effective saved filesystem"
    let effective = uid_line.split_whitespace().nth(2).context("short Uid: line")?;
    Ok(effective == "0")
}

/// The `postgres` account (created by the Debian package).
fn postgres_account() -> anyhow::Result<Account> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if let [name, _, uid, gid, ..] = fields.as_slice()
            && *name == "postgres"
        {
            return Ok(Account { uid: uid.parse()?, gid: gid.parse()? });
        }
    }
    bail!(
        "no `postgres` user to run PostgreSQL as (it refuses to run as root): run `scripts/setup`, \
         which installs the Debian `postgresql` package"
    )
}

/// The cargo target directory of the running test (templates are cached there), or the system
/// temp dir when this does not run from one.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in <target>/[<triple>/]<profile>/deps/; cargo keeps
    // .rustc_info.json at the root of <target>.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .find(|dir| dir.join(".rustc_info.json").is_file())
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
}

/// The template cluster for this PostgreSQL version, made by `initdb` if it is not there yet,
/// and the lock file, held shared: copy the template while holding it.
///
/// A template is never changed once made, except when its stamp is out of date (only a change of
/// [`TEMPLATE_STAMP`] causes that); the rebuild takes the lock exclusively, so it never pulls a
/// template from under a copy.
fn template(bin: &Path, version: &str, run_as: Option<Account>) -> anyhow::Result<(PathBuf, File)> {
    let root = cache_dir();
    let template = root.join(format!("pg-template-{version}"));
    fs::create_dir_all(&root)?;
    let lock_path = root.join(format!("pg-template-{version}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let locking = || format!("locking {}", lock_path.display());
    let is_current =
        || fs::read_to_string(template.join(STAMP_FILE)).ok().as_deref() == Some(TEMPLATE_STAMP);
    lock.lock_shared().with_context(locking)?;
    if is_current() {
        return Ok((template, lock));
    }
    lock.unlock()?;
    // One builder at a time; the others wait here and then find the template made.
    lock.lock().with_context(locking)?;
    if !is_current() {
        build_template(bin, &template, run_as)
            .with_context(|| format!("making the PostgreSQL template {}", template.display()))?;
    }
    lock.unlock()?;
    lock.lock_shared().with_context(locking)?;
    Ok((template, lock))
}

/// Runs `initdb` into a scratch directory next to `template` and renames it into place.
fn build_template(bin: &Path, template: &Path, run_as: Option<Account>) -> anyhow::Result<()> {
    let scratch = template.with_extension(format!("building-{}", std::process::id()));
    for stale in [template, scratch.as_path()] {
        if stale.exists() {
            fs::remove_dir_all(stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    fs::create_dir(&scratch)?;
    if let Some(account) = run_as {
        std::os::unix::fs::chown(&scratch, Some(account.uid), Some(account.gid))?;
    }
    let out = command(bin, "initdb", run_as)
        .arg("-D")
        .arg(&scratch)
        // --no-sync: a template for throwaway servers need not survive a power cut.
        .args(["-A", "trust", "-U", USER, "-E", "UTF8", "--no-locale", "--no-sync"])
        .output()
        .context("running initdb")?;
    checked(out, "initdb")?;
    fs::write(scratch.join(STAMP_FILE), TEMPLATE_STAMP)?;
    fs::rename(&scratch, template)?;
    Ok(())
}

/// Copies the template cluster to `data` (mode 0700, as PostgreSQL requires), owned by
/// `run_as` if given.
fn copy_template(template: &Path, data: &Path, run_as: Option<Account>) -> anyhow::Result<()> {
    copy_tree(template, data, run_as)
        .with_context(|| format!("copying {} to {}", template.display(), data.display()))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(data, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Copies a directory tree of plain files and directories, keeping modes, changing owners.
fn copy_tree(from: &Path, to: &Path, run_as: Option<Account>) -> anyhow::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, run_as)?;
        } else if kind.is_file() {
            if entry.file_name() == STAMP_FILE {
                continue;
            }
            fs::copy(entry.path(), &target)?;
            if let Some(account) = run_as {
                std::os::unix::fs::chown(&target, Some(account.uid), Some(account.gid))?;
            }
        } else {
            bail!("unexpected non-file {} in the template", entry.path().display());
        }
    }
    if let Some(account) = run_as {
        std::os::unix::fs::chown(to, Some(account.uid), Some(account.gid))?;
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Kills a postmaster and every process it started, and waits for them to be gone.
///
/// The postmaster's children each lead a session of their own (PostgreSQL calls `setsid` in
/// every child), so they are found by parent pid, not by process group. The postmaster is
/// stopped first so that it cannot start another child while they are listed.
fn kill_server(pid: u32) -> anyhow::Result<()> {
    signal("-STOP", &[pid])?;
    let mut all = children(pid);
    all.push(pid);
    signal("-KILL", &all)?;
    if !wait_gone(&all, STOP_TIMEOUT) {
        bail!("PostgreSQL (pid {pid}) or one of its processes still runs after SIGKILL");
    }
    Ok(())
}

/// The pids of the running processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may contain spaces or ')'.
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            ppid == Some(parent.to_string().as_str())
        })
        .collect()
}

/// Sends a signal with `kill(1)` to each pid.
fn signal(signal: &str, pids: &[u32]) -> anyhow::Result<()> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let out = Command::new("kill").arg(signal).arg("--").args(&pids).output();
    let out = out.context("running kill")?;
    // A process that exited on its own in the meantime is not an error.
    if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("No such process") {
        checked(out, &format!("kill {signal} {}", pids.join(" ")))?;
    }
    Ok(())
}

/// Waits up to `timeout` for every process of `pids` to exit; whether they did.
fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|&pid| is_running(pid)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` exists and is not a zombie (the postmaster's parent, pg_ctl, is gone,
/// so init reaps it; until then it is dead but listed).
fn is_running(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    state.is_some_and(|state| state != "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_to_run_setup() {
        let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let Err(e) = find_binaries_in(empty.path()) else { panic!("found binaries in {empty:?}") };
        let message = e.to_string();
        assert!(message.contains("scripts/setup"), "{message}");
        assert!(message.contains(&empty.path().display().to_string()), "{message}");
    }

    #[test]
    fn children_of_a_process_are_found_by_parent_pid() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap_or_else(|e| panic!("{e}"));
        let found = children(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?} should hold {}", child.id());
        assert!(wait_gone(&[child.id()], Duration::from_secs(5)), "a reaped child is gone");
    }
}
