//! `provision N`: users with contacts for a large load test, through the operator's bulk path.
//! It writes an import file (`peerline-supernode import`'s JSON Lines: each user an account with
//! one fresh Ed25519 device key and a session token bound to it, and each pair of
//! [`roster::pairs`] an accepted contact pair) and runs the supernode's `import` on it, or only
//! writes the file for an operator to import. The tokens and device keys go to the state file, so
//! that `login`, `hold`, `storm` and `run` log in with them: real token logins, signed by the
//! device key and checked by the supernode.
//!
//! As in `seed`, every user shares one Argon2id hash of one password (hashed once here, with the
//! supernode's parameters), so a password login of a provisioned user works too.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use ed25519_dalek::SigningKey;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::roster;
use crate::seed::DEVICE_NAME;
use crate::state_file::SavedUser;

/// Where the provisioned users go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Run `peerline-supernode import` on the file, with these settings passed through.
    Import {
        /// The `peerline-supernode` binary.
        supernode_bin: PathBuf,
        /// `--config` of the supernode(s).
        config: Option<PathBuf>,
        /// `--data-dir` (SQLite).
        data_dir: Option<PathBuf>,
        /// `--database-url` (a cluster's PostgreSQL, loopback only).
        database_url: Option<String>,
        /// Keep the import file here (a temporary file otherwise).
        keep_file: Option<PathBuf>,
    },
    /// Only write the import file, for an operator to import.
    FileOnly(PathBuf),
}

/// What `provision` was asked to do.
#[derive(Debug, Clone)]
pub struct ProvisionPlan {
    /// How many users.
    pub users: usize,
    /// Username prefix; user `i` is `{prefix}{first + i}`.
    pub prefix: String,
    /// Number of the first user.
    pub first: usize,
    /// The password every user gets.
    pub password: String,
    /// Where they go.
    pub destination: Destination,
}

/// The result of `provision`.
#[derive(Debug, Serialize)]
pub struct ProvisionReport {
    /// Always `provision`.
    pub command: &'static str,
    /// Users provisioned (accounts created, or written to the file).
    pub users: usize,
    /// Accepted contact pairs (two contact rows each).
    pub contact_pairs: usize,
    /// Whether the supernode imported them (false: only the file was written).
    pub imported: bool,
    /// The import file, when it was kept.
    pub import_file: Option<String>,
    /// Seconds spent making keys, tokens and the file.
    pub generate_seconds: f64,
    /// Seconds the supernode's import took (0 without one).
    pub import_seconds: f64,
    /// Wall-clock seconds in all.
    pub seconds: f64,
    /// Users per second, over `seconds`.
    pub per_second: f64,
}

impl std::fmt::Display for ProvisionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.imported { "provisioned" } else { "wrote the import file for" };
        write!(
            f,
            "{what} {} users with {} contact pairs in {:.1} s ({:.0} users/s; generating {:.1} s, \
             importing {:.1} s)",
            self.users,
            self.contact_pairs,
            self.seconds,
            self.per_second,
            self.generate_seconds,
            self.import_seconds
        )
    }
}

/// The `peerline-supernode` next to this program (both are built into one target directory).
pub fn default_supernode_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("peerline-supernode")
}

/// Writes the import file for `plan` to `out`; returns every user's saved login. Users are
/// `{prefix}{first + i}`, each with a fresh device key and token; contacts are the roster's
/// pairs among them.
pub fn write_import_file(
    plan: &ProvisionPlan,
    password_hash: &str,
    out: impl Write,
) -> anyhow::Result<Vec<(String, SavedUser)>> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let name = |i: usize| format!("{}{}", plan.prefix, plan.first + i);
    let mut saved = Vec::with_capacity(plan.users);
    for i in 0..plan.users {
        let username = name(i);
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public = hex::encode(key.verifying_key().to_bytes());
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        // The supernode's format: 64 hex characters, stored as the SHA-256 of their text.
        let token = hex::encode(secret);
        let token_sha256 = hex::encode(Sha256::digest(token.as_bytes()));
        // No expires_at: the supernode's configured token lifetime from the import.
        let line = serde_json::json!({"account": {
            "username": username,
            "password_hash": password_hash,
            "devices": [{"public_key": public, "name": DEVICE_NAME}],
            "sessions": [{"token_sha256": token_sha256, "device_public_key": public}],
        }});
        serde_json::to_writer(&mut out, &line).context("writing the import file")?;
        out.write_all(b"\n").context("writing the import file")?;
        saved.push((username, SavedUser { token, device_key: hex::encode(key.to_bytes()) }));
    }
    for (a, b) in roster::pairs(plan.users) {
        writeln!(out, "{{\"contact\":[\"{}\",\"{}\"]}}", name(a), name(b))
            .context("writing the import file")?;
    }
    out.flush().context("writing the import file")?;
    Ok(saved)
}

/// Runs `provision`: returns the saved logins (to add to a state file) and the report.
pub async fn run(
    plan: ProvisionPlan,
) -> anyhow::Result<(Vec<(String, SavedUser)>, ProvisionReport)> {
    if let Destination::Import { database_url: Some(url), .. } = &plan.destination {
        crate::seed::check_loopback(url, "provision")?;
    }
    let started = Instant::now();
    let password = plan.password.clone();
    let password_hash = tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(|e| anyhow!("hashing the password: {e}"))?;

    // The file: where it was asked for, or a temporary one that lives until the import is done.
    let (path, _temp) = match &plan.destination {
        Destination::FileOnly(path) | Destination::Import { keep_file: Some(path), .. } => {
            (path.clone(), None)
        }
        Destination::Import { keep_file: None, .. } => {
            let temp = tempfile::Builder::new()
                .prefix("peerline-provision-")
                .suffix(".jsonl")
                .tempfile()
                .context("creating a temporary import file")?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    eprintln!("provisioning {} users: writing {}…", plan.users, path.display());
    let saved = {
        let (plan, path, hash) = (plan.clone(), path.clone(), password_hash);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating the import file {}", path.display()))?;
            write_import_file(&plan, &hash, file)
        })
        .await??
    };
    let generate_seconds = started.elapsed().as_secs_f64();
    let contact_pairs = roster::pairs(plan.users).count();

    let import_started = Instant::now();
    let imported = match &plan.destination {
        Destination::FileOnly(_) => false,
        Destination::Import { supernode_bin, config, data_dir, database_url, .. } => {
            let mut command = Command::new(supernode_bin);
            command.arg("import").arg("--json");
            if let Some(config) = config {
                command.arg("--config").arg(config);
            }
            if let Some(dir) = data_dir {
                command.arg("--data-dir").arg(dir);
            }
            if let Some(url) = database_url {
                command.arg("--database-url").arg(url);
            }
            command.arg(&path);
            let (bin, path) = (supernode_bin.clone(), path.clone());
            let report =
                tokio::task::spawn_blocking(move || import(command, &bin, &path)).await??;
            check_counts(&report, plan.users, contact_pairs)?;
            true
        }
    };
    let import_seconds = if imported { import_started.elapsed().as_secs_f64() } else { 0.0 };
    let seconds = started.elapsed().as_secs_f64();
    let kept = match &plan.destination {
        Destination::FileOnly(path) | Destination::Import { keep_file: Some(path), .. } => {
            Some(path.display().to_string())
        }
        Destination::Import { keep_file: None, .. } => None,
    };
    let report = ProvisionReport {
        command: "provision",
        users: saved.len(),
        contact_pairs,
        imported,
        import_file: kept,
        generate_seconds,
        import_seconds,
        seconds,
        per_second: saved.len() as f64 / seconds.max(1e-9),
    };
    Ok((saved, report))
}

/// Runs the supernode's import (its progress and problems on our stderr); returns its report.
fn import(mut command: Command, bin: &Path, file: &Path) -> anyhow::Result<serde_json::Value> {
    eprintln!("importing {} with {}…", file.display(), bin.display());
    let out =
        command.stdin(Stdio::null()).stderr(Stdio::inherit()).output().with_context(|| {
            format!(
                "running {} (build it with `cargo build -p peerline-supernode`, or give \
                 --supernode-bin)",
                bin.display()
            )
        })?;
    if !out.status.success() {
        // Its problems are on stderr above; existing usernames are the likely one.
        bail!(
            "peerline-supernode import failed ({}); nothing was provisioned (if the users exist \
             already, choose another --prefix or --first)",
            out.status
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "peerline-supernode import printed no report: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The import must have created every user and pair (a username that existed would have made
/// it fail: its saved token would not work).
fn check_counts(report: &serde_json::Value, users: usize, pairs: usize) -> anyhow::Result<()> {
    let count = |key: &str| report.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    if count("accounts") != users as u64 || count("contact_pairs") != pairs as u64 {
        bail!("the import reported {report}, expected {users} accounts and {pairs} contact pairs");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_one_account_per_user_and_the_roster_pairs() {
        let plan = ProvisionPlan {
            users: 25,
            prefix: "p".into(),
            first: 100,
            password: "unused".into(),
            destination: Destination::FileOnly(PathBuf::new()),
        };
        let mut out = Vec::new();
        let saved = write_import_file(&plan, "$argon2id$x", &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 25 + roster::pairs(25).count());
        assert_eq!(saved[0].0, "p100");
        let first = &lines[0]["account"];
        assert_eq!(first["username"], "p100");
        let key = saved[0].1.signing_key().unwrap();
        assert_eq!(first["devices"][0]["public_key"], hex::encode(key.verifying_key().to_bytes()));
        let token_hash = hex::encode(Sha256::digest(saved[0].1.token.as_bytes()));
        assert_eq!(first["sessions"][0]["token_sha256"], token_hash);
        assert_eq!(lines[25]["contact"], serde_json::json!(["p100", "p101"]));
    }

    #[test]
    fn only_loopback_databases() {
        assert!(
            crate::seed::check_loopback("postgres://peerline@127.0.0.1:5432/peerline", "provision")
                .is_ok()
        );
        assert!(
            crate::seed::check_loopback("postgres://peerline@db.example.org/peerline", "provision")
                .is_err()
        );
    }
}
