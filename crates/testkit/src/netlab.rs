//! A lab of real Linux NATs for end-to-end tests (../shared/NETLAB.md): every host is a network
//! namespace, the "internet" is a bridge in its own namespace on 203.0.113.0/24, and each NAT
//! router masquerades a private 10.N.0.0/24 behind one public address. Everything the lab made is
//! deleted when it is dropped, also when a test fails. Needs root, `ip` and `iptables`.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// How a NAT router maps and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping, address-and-port-dependent filtering: the common home
    /// router (plain MASQUERADE, unsolicited inbound dropped).
    HomeRouter,
    /// Endpoint-dependent mapping (MASQUERADE --random-fully): a new public port per
    /// destination.
    Symmetric,
    /// A home router whose network lets only TCP port 443 out (a corporate or hotel network):
    /// all UDP and every other TCP port is dropped.
    UdpBlocked,
}

impl NatKind {
    /// Every kind, for the NAT matrix.
    pub const ALL: [Option<NatKind>; 4] =
        [None, Some(NatKind::HomeRouter), Some(NatKind::Symmetric), Some(NatKind::UdpBlocked)];

    /// A short name for messages and reports (`None` is a public address).
    pub fn name(kind: Option<NatKind>) -> &'static str {
        match kind {
            None => "public",
            Some(NatKind::HomeRouter) => "home-router",
            Some(NatKind::Symmetric) => "symmetric",
            Some(NatKind::UdpBlocked) => "udp-blocked",
        }
    }
}

/// The network namespaces of one lab, deleted on drop.
pub struct Lab {
    prefix: String,
    /// Short unique prefix for interface names (at most 15 characters each, and global while a
    /// veth pair is still in the root namespace).
    dev: String,
    namespaces: Vec<String>,
    next_net: u8,
    next_public: u8,
}

/// A NAT router in the lab.
#[derive(Debug, Clone)]
pub struct Router {
    /// Its namespace.
    pub netns: String,
    /// Its WAN interface.
    wan: String,
    /// Its public address (on the lab's internet), as first assigned.
    pub public_ip: String,
}

impl Router {
    /// Gives the router a new public address, as when a home router reconnects or a phone
    /// moves to another network: its old mappings are gone with the old address.
    pub fn change_public_address(&self, new_ip: &str) -> anyhow::Result<()> {
        run(&["ip", "-n", &self.netns, "addr", "flush", "dev", &self.wan])?;
        run(&["ip", "-n", &self.netns, "addr", "add", &format!("{new_ip}/24"), "dev", &self.wan])?;
        // MASQUERADE forgets the mappings of a removed address; make sure of it.
        let _ = Command::new("ip").args(["netns", "exec", &self.netns, "conntrack", "-F"]).output();
        Ok(())
    }

    /// Sets how long the router keeps an idle UDP mapping (conntrack), in seconds.
    pub fn set_udp_timeout(&self, secs: u32) -> anyhow::Result<()> {
        for key in ["nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"] {
            run(&[
                "ip",
                "netns",
                "exec",
                &self.netns,
                "sysctl",
                "-qw",
                &format!("net.netfilter.{key}={secs}"),
            ])?;
        }
        Ok(())
    }
}

/// A host in the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its namespace.
    pub netns: String,
    /// Its address (public, or private behind a NAT).
    pub ip: String,
}

impl Host {
    /// A command that runs `program` inside this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let (program, rest) = args.split_first().context("empty command")?;
    let out = Command::new(program).args(rest).output().with_context(|| {
        format!("running {program} (install iproute2 and iptables; run as root)")
    })?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {} (the NAT lab needs root, iproute2 and iptables; run scripts/setup as root)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lab {
    /// An empty lab: the bridge that plays the internet.
    pub fn new() -> anyhow::Result<Self> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let run_id = RUN.fetch_add(1, Ordering::Relaxed);
        sweep_stale();
        let prefix = format!("pl{}x{run_id}", std::process::id());
        let dev = format!("v{:x}", (std::process::id() % 0x1_0000) * 16 + run_id % 16);
        let mut lab = Lab { prefix, dev, namespaces: Vec::new(), next_net: 1, next_public: 10 };
        let inet = lab.netns("inet")?;
        run(&["ip", "-n", &inet, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &inet, "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    fn netns(&mut self, name: &str) -> anyhow::Result<String> {
        let ns = format!("{}{name}", self.prefix);
        run(&["ip", "netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Plugs `ns` into the internet bridge with the next public address; returns it.
    fn attach_public(&mut self, ns: &str, short: &str) -> anyhow::Result<String> {
        let inet = format!("{}inet", self.prefix);
        let ip = format!("203.0.113.{}", self.next_public);
        self.next_public += 1;
        let (dev, peer) = (format!("{}w{short}", self.dev), format!("{}b{short}", self.dev));
        run(&["ip", "link", "add", &dev, "type", "veth", "peer", "name", &peer])?;
        run(&["ip", "link", "set", &dev, "netns", ns])?;
        run(&["ip", "link", "set", &peer, "netns", &inet])?;
        run(&["ip", "-n", &inet, "link", "set", &peer, "master", "br0", "up"])?;
        run(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", &dev])?;
        run(&["ip", "-n", ns, "link", "set", &dev, "up"])?;
        Ok(ip)
    }

    /// A host with a public address (a supernode, a relay, or a client without NAT).
    pub fn public_host(&mut self, name: &str) -> anyhow::Result<Host> {
        let ns = self.netns(name)?;
        let ip = self.attach_public(&ns, name)?;
        Ok(Host { netns: ns, ip })
    }

    /// A client behind its own NAT router of the given kind.
    pub fn natted_host(&mut self, name: &str, kind: NatKind) -> anyhow::Result<Host> {
        self.natted_host_with_router(name, kind).map(|(host, _)| host)
    }

    /// Like [`Lab::natted_host`], also returning the router.
    pub fn natted_host_with_router(
        &mut self,
        name: &str,
        kind: NatKind,
    ) -> anyhow::Result<(Host, Router)> {
        let net = self.next_net;
        self.next_net += 1;
        let router = self.netns(&format!("{name}r"))?;
        let wan = format!("{}w{name}r", self.dev);
        let public_ip = self.attach_public(&router, &format!("{name}r"))?;
        let host = self.netns(name)?;
        let (lan, cli) = (format!("{}l{name}", self.dev), format!("{}c{name}", self.dev));
        run(&["ip", "link", "add", &lan, "type", "veth", "peer", "name", &cli])?;
        run(&["ip", "link", "set", &lan, "netns", &router])?;
        run(&["ip", "link", "set", &cli, "netns", &host])?;
        let gw = format!("10.{net}.0.1");
        let ip = format!("10.{net}.0.2");
        run(&["ip", "-n", &router, "addr", "add", &format!("{gw}/24"), "dev", &lan])?;
        run(&["ip", "-n", &router, "link", "set", &lan, "up"])?;
        run(&["ip", "-n", &host, "addr", "add", &format!("{ip}/24"), "dev", &cli])?;
        run(&["ip", "-n", &host, "link", "set", &cli, "up"])?;
        run(&["ip", "-n", &host, "route", "add", "default", "via", &gw])?;
        run(&["ip", "netns", "exec", &router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let mut masquerade =
            vec!["ip", "netns", "exec", &router, "iptables", "-t", "nat", "-A", "POSTROUTING"];
        masquerade.extend(["-o", &wan, "-j", "MASQUERADE"]);
        if kind == NatKind::Symmetric {
            masquerade.push("--random-fully");
        }
        run(&masquerade)?;
        if kind == NatKind::UdpBlocked {
            let forward = ["ip", "netns", "exec", &router, "iptables", "-A", "FORWARD", "-i", &lan];
            let mut allow_https = forward.to_vec();
            allow_https.extend(["-p", "tcp", "--dport", "443", "-j", "ACCEPT"]);
            run(&allow_https)?;
            let mut drop_rest = forward.to_vec();
            drop_rest.extend(["-j", "DROP"]);
            run(&drop_rest)?;
        }
        // A real router drops unsolicited packets to itself; without this, a punch packet that
        // arrives first claims the port and the NAT turns symmetric (NETLAB.md).
        run(&[
            "ip",
            "netns",
            "exec",
            &router,
            "iptables",
            "-A",
            "INPUT",
            "-i",
            &wan,
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "DROP",
        ])?;
        Ok((Host { netns: host, ip }, Router { netns: router, wan, public_ip }))
    }
}

/// A coturn TURN server running in a lab host with the shipped configuration
/// (`deploy/coturn/turnserver.conf`), killed on drop.
pub struct TurnRelay {
    child: std::process::Child,
    /// Its log file.
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TurnRelay {
    /// Starts coturn on `host` with the shared `secret`: UDP and TCP on 3478, TLS on 443 with
    /// the given PEM certificate and key. The shipped config refuses relaying to documentation
    /// ranges, which the lab's "internet" uses; `allowed_peers` (a coturn range such as
    /// `203.0.113.0-203.0.113.255`) lets the lab's public addresses through and nothing else.
    pub fn start(
        host: &Host,
        secret: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
        allowed_peers: &str,
    ) -> anyhow::Result<Self> {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/coturn/turnserver.conf");
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("turn.log");
        let child = host
            .command("turnserver")
            .arg("-c")
            .arg(&config)
            .arg(format!("--static-auth-secret={secret}"))
            .arg(format!("--listening-ip={}", host.ip))
            .arg(format!("--relay-ip={}", host.ip))
            .arg(format!("--allowed-peer-ip={allowed_peers}"))
            .arg("--cert")
            .arg(cert)
            .arg("--pkey")
            .arg(key)
            .arg("--log-file")
            .arg(&log)
            .arg("--pidfile")
            .arg(dir.path().join("turn.pid"))
            .args(["--no-stdout-log", "--simple-log"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting turnserver (install coturn: run scripts/setup)")?;
        let mut relay = TurnRelay { child, log, _dir: dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let up = host
                .command("bash")
                .args(["-c", &format!("exec 3<>/dev/tcp/{}/443", host.ip)])
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return Ok(relay);
            }
            if let Some(status) = relay.child.try_wait()? {
                bail!("turnserver exited ({status}); log:\n{}", relay.log_text());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "turnserver did not listen on {}:443 within 10 s; log:\n{}",
                    host.ip,
                    relay.log_text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The coturn process id (for CPU measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What coturn logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TurnRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes the namespaces of labs whose test process is gone (killed before it could clean up).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let pid = name.strip_prefix("pl").and_then(|rest| rest.split('x').next());
        if let Some(pid) = pid.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
