//! A network of real supernodes for end-to-end tests: one PostgreSQL and one nats-server, each
//! started here on free loopback ports, and `n` `peerline-supernode` processes (`sn1` … `snN`)
//! that share them and one TLS certificate, as a production cluster shares one certificate (or
//! one CA). Each supernode's config lists the other supernodes' client URLs in
//! `cluster.supernodes`, so that clients learn them at login and can fail over.
//!
//! Starting fails with a message that says to run `scripts/setup` when PostgreSQL or nats-server
//! cannot start; tests never skip silently.
//!
//! [`TestCluster::start_with`] adds configuration to every node (e.g. `[limits]` for admission
//! control in a reconnect-storm test); [`TestCluster::is_alive`] and
//! [`TestCluster::peak_rss_bytes`] let a test check that a node survived a load and stayed within
//! a memory limit.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::Supernode;
use crate::nats::TestNats;
use crate::postgres::TestPostgres;

/// How long a cluster may take to form (every supernode hearing the others' heartbeats).
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running network of supernodes. Nodes are numbered from 0 here; node `i` has the node id
/// `sn{i+1}`. Dropping it stops every process it started.
pub struct TestCluster {
    /// Declared first: the supernodes stop before the engines they use.
    nodes: Vec<Supernode>,
    /// Whether each node runs (not killed).
    running: Vec<bool>,
    fingerprint: String,
    /// Holds the shared certificate and key and the nodes' config files.
    dir: TempDir,
    nats: TestNats,
    postgres: TestPostgres,
}

impl TestCluster {
    /// Starts PostgreSQL, nats-server and `n` supernodes sharing one certificate, and waits
    /// until every supernode hears the `n - 1` others.
    pub fn start(n: usize) -> anyhow::Result<TestCluster> {
        Self::start_with(n, "")
    }

    /// Like [`TestCluster::start`], with `extra_config` (TOML sections other than `[cluster]`,
    /// such as `[limits]`) in every node's config file.
    pub fn start_with(n: usize, extra_config: &str) -> anyhow::Result<TestCluster> {
        let postgres = TestPostgres::start()
            .context("PostgreSQL must start for a cluster test (run scripts/setup)")?;
        let database = postgres.create_database("peerline").context("creating the database")?;
        let nats = TestNats::start()
            .context("nats-server must start for a cluster test (run scripts/setup)")?;
        let dir = tempfile::Builder::new().prefix("peerline-cluster-").tempdir()?;
        let (cert, key) = write_shared_certificate(dir.path())?;

        // Client ports are chosen before any supernode starts, because each one's config lists
        // the others. The listeners hold the ports until just before their supernode binds them.
        let mut listeners = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .context("reserving client ports")?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?;
        let urls: Vec<String> = ports.iter().map(|p| format!("wss://127.0.0.1:{p}")).collect();

        let mut nodes = Vec::with_capacity(n);
        for (i, port) in ports.iter().enumerate() {
            let others: Vec<String> = urls
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, u)| format!("{u:?}"))
                .collect();
            let config = dir.path().join(format!("sn{}.toml", i + 1));
            std::fs::write(
                &config,
                format!("{extra_config}\n[cluster]\nsupernodes = [{}]\n", others.join(", ")),
            )?;
            let id = format!("sn{}", i + 1);
            let args = [
                "--config",
                path_str(&config)?,
                "--node-id",
                &id,
                "--database-url",
                &database,
                "--nats-url",
                &nats.url(),
                "--tls-cert",
                path_str(&cert)?,
                "--tls-key",
                path_str(&key)?,
            ];
            drop(listeners.remove(0));
            let node = Supernode::start_at(&format!("127.0.0.1:{port}"), &args)
                .with_context(|| format!("starting supernode {id} on port {port}"))?;
            nodes.push(node);
        }
        let fingerprint = nodes.first().and_then(|n| n.fingerprint.clone()).unwrap_or_default();
        let cluster =
            TestCluster { running: vec![true; n], nodes, fingerprint, dir, nats, postgres };
        cluster.wait_until_joined()?;
        Ok(cluster)
    }

    /// Node `i` (from 0; its node id is `sn{i+1}`).
    pub fn node(&self, i: usize) -> &Supernode {
        &self.nodes[i]
    }

    /// Every node.
    pub fn nodes(&self) -> &[Supernode] {
        &self.nodes
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> &str {
        &self.nodes[i].url
    }

    /// The SHA-256 fingerprint of the certificate every node presents, as the nodes print it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The shared certificate (PEM), e.g. as a CA file for clients.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The shared PostgreSQL.
    pub fn postgres(&self) -> &TestPostgres {
        &self.postgres
    }

    /// The shared nats-server.
    pub fn nats(&self) -> &TestNats {
        &self.nats
    }

    /// The shared PostgreSQL, to stop and restart it (an outage).
    pub fn postgres_mut(&mut self) -> &mut TestPostgres {
        &mut self.postgres
    }

    /// The shared nats-server, to kill and restart it (an outage).
    pub fn nats_mut(&mut self) -> &mut TestNats {
        &mut self.nats
    }

    /// The URL of the database the nodes share (`postgres://…/peerline`), e.g. to seed accounts.
    pub fn database_url(&self) -> String {
        self.postgres.url("peerline")
    }

    /// The process id of node `i` (of its latest start).
    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.id()
    }

    /// Whether node `i`'s process is still running: not killed here, and not exited or crashed
    /// by itself.
    pub fn is_alive(&mut self, i: usize) -> bool {
        self.running[i] && matches!(self.nodes[i].child.try_wait(), Ok(None))
    }

    /// The peak resident memory of node `i`'s process so far (`VmHWM` in `/proc/PID/status`),
    /// in bytes.
    pub fn peak_rss_bytes(&self, i: usize) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid(i));
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .with_context(|| format!("no VmHWM line in {path}"))?;
        Ok(kib * 1024)
    }

    /// Kills node `i` with SIGKILL (its connections drop, nothing is flushed).
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
        self.running[i] = false;
    }

    /// Starts node `i` again (same port, data directory, certificate and config) and waits until
    /// every running node hears all the others again.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].restart()?;
        self.running[i] = true;
        self.wait_until_joined()
    }

    /// Waits until every running node is connected to the bus and hears every other running
    /// node (`bus.connected` and `bus.live_nodes` in its `/healthz`), up to 30 s.
    pub fn wait_until_joined(&self) -> anyhow::Result<()> {
        let others = self.running.iter().filter(|r| **r).count().saturating_sub(1);
        for i in (0..self.nodes.len()).filter(|i| self.running[*i]) {
            self.wait_bus_connected(i, true, JOIN_TIMEOUT)?;
            self.wait_live_nodes(i, others, JOIN_TIMEOUT)?;
        }
        Ok(())
    }

    /// Waits until every running node says it is (or is not) connected to the bus: after the bus
    /// was killed, that the nodes noticed, so that a later [`TestCluster::wait_until_joined`]
    /// waits for their reconnection instead of reading a health that predates the loss.
    pub fn wait_bus_connected_all(&self, connected: bool) -> anyhow::Result<()> {
        for i in (0..self.nodes.len()).filter(|i| self.running[*i]) {
            self.wait_bus_connected(i, connected, JOIN_TIMEOUT)?;
        }
        Ok(())
    }

    fn wait_bus_connected(
        &self,
        i: usize,
        connected: bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let node = &self.nodes[i];
        loop {
            let health: Value = node
                .admin_get("/healthz")
                .ok()
                .and_then(|body| serde_json::from_str(&body).ok())
                .unwrap_or(Value::Null);
            if health["bus"]["connected"].as_bool() == Some(connected) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("sn{}: bus.connected never became {connected}: {health}", i + 1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i` reports `count` other live nodes (e.g. that it noticed a dead one).
    pub fn wait_live_nodes(&self, i: usize, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let node = &self.nodes[i];
        loop {
            let health: Value = node
                .admin_get("/healthz")
                .ok()
                .and_then(|body| serde_json::from_str(&body).ok())
                .unwrap_or(Value::Null);
            if health["bus"]["live_nodes"].as_u64() == Some(count as u64) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "sn{} did not see {count} other supernode(s) within {timeout:?}: {health}\n\
                     its log:\n{}",
                    i + 1,
                    node.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The sum of node `i`'s metric series that start with `series` in its `/metrics`, for
    /// example `peerline_logins_total{method="password"` (every result); 0 when there is none.
    pub fn metric(&self, i: usize, series: &str) -> anyhow::Result<f64> {
        metric(&self.nodes[i], series)
    }
}

/// The sum of a supernode's metric series that start with `series` in its `/metrics` (for
/// example `peerline_logins_total{method="password"`, every result); 0 when there is none.
pub fn metric(node: &Supernode, series: &str) -> anyhow::Result<f64> {
    let body = node.admin_get("/metrics")?;
    Ok(body
        .lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

/// Writes one self-signed certificate for `127.0.0.1` and `localhost` (and its key) into `dir`,
/// for every node of a cluster.
fn write_shared_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key = rcgen::KeyPair::generate().context("generating the cluster's TLS key")?;
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .context("naming the cluster's certificate")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Peerline test cluster");
    let cert = params.self_signed(&key).context("signing the cluster's certificate")?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    Ok((cert_path, key_path))
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}
