//! `peerline-supernode import FILE`: an operator's bulk provisioning of accounts (with devices and
//! session tokens) and accepted contact pairs, written into the configured store (SQLite in the
//! data dir, or the cluster's PostgreSQL) in batches of one transaction each.
//!
//! The whole file is read and checked first ([`file`]), against the same rules a registration and
//! a login apply, and against the store (existing usernames, contacts that must exist); any
//! problem stops the import before anything is written, with every problem listed by line. Then
//! accounts go in, then contact pairs. What ends up stored is what registrations, password logins
//! and accepted contact requests would have stored; see docs/operations.md for the format.

pub mod file;

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use peerline_store::{IMPORT_BATCH_ACCOUNTS, IMPORT_BATCH_PAIRS, Store, TimestampMs, UserId};
use serde::Serialize;

pub use file::{InvalidFile, Plan, Problem, Rules};

use peerline_supernode::config::Config;

/// What to do about a username that is an account already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Existing {
    /// Leave the account as it is (its devices and sessions in the file are not imported; its
    /// contact pairs are) and count it.
    Skip,
    /// Import nothing: the check lists every such line.
    Fail,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Check the file (and the store) only; write nothing.
    pub dry_run: bool,
    /// What to do about existing usernames.
    pub existing: Existing,
    /// Show a progress bar on stderr (only sensible when it is a terminal).
    pub progress: bool,
    /// Batches written at once. PostgreSQL overlaps their commits; SQLite has one writer and
    /// takes them one after another whatever this says.
    pub jobs: usize,
}

/// What an import did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImportReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Lines of the file (blank ones included).
    pub lines: u64,
    /// Accounts created.
    pub accounts: usize,
    /// Accounts of the file that existed already and were left as they were.
    pub skipped_existing: usize,
    /// Devices created.
    pub devices: usize,
    /// Sessions created.
    pub sessions: usize,
    /// Contact pairs written (two rows each).
    pub contact_pairs: usize,
    /// Wall-clock seconds, reading included.
    pub seconds: f64,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would import" } else { "imported" };
        write!(
            f,
            "{verb} {} accounts ({} devices, {} sessions) and {} contact pairs; {} existing \
             accounts skipped; {} lines in {:.1} s",
            self.accounts,
            self.devices,
            self.sessions,
            self.contact_pairs,
            self.skipped_existing,
            self.lines,
            self.seconds
        )
    }
}

fn now_ms() -> TimestampMs {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A progress bar on stderr, or a hidden one.
fn bar(show: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// Imports `input` into the store `config` names.
pub async fn run(
    config: &Config,
    input: impl BufRead + Send + 'static,
    input_len: Option<u64>,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let now = now_ms();
    let rules = Rules {
        now,
        token_lifetime_ms: i64::from(config.sessions.token_lifetime_days) * 86_400_000,
        max_devices: usize::try_from(config.limits.max_devices).unwrap_or(usize::MAX),
    };
    // Reading and checking is CPU work (JSON, Ed25519 points, PHC strings): off the runtime.
    let reading = bar(options.progress, input_len.unwrap_or(0), "reading");
    let read_bar = reading.clone();
    let file::Checked { plan, lines } =
        tokio::task::spawn_blocking(move || file::read(input, &rules, |n| read_bar.inc(n)))
            .await
            .context("reading the import file")?
            .context("reading the import file")?;
    reading.finish_and_clear();
    let mut plan = plan?;

    // A dry run on a SQLite database that does not exist yet checks against an empty store
    // rather than create one.
    let store: Option<Arc<dyn Store>> = if options.dry_run
        && config.cluster.database_url.is_none()
        && !config.database_path().exists()
    {
        None
    } else {
        Some(peerline_supernode::cluster::open_store(config).await?)
    };
    let result = import(store.as_deref(), &mut plan, lines, options, now, started).await;
    if let Some(store) = store {
        store.close().await;
    }
    result
}

/// Checks `plan` against the store, then writes it (unless a dry run).
async fn import(
    store: Option<&dyn Store>,
    plan: &mut Plan,
    lines: u64,
    options: &ImportOptions,
    now: TimestampMs,
    started: Instant,
) -> anyhow::Result<ImportReport> {
    // Who exists already: the file's accounts (skip or fail) and the contacts it names without
    // an account line (must exist).
    let names: Vec<String> = plan.people.iter().map(|p| p.username.clone()).collect();
    let mut ids: HashMap<String, UserId> = match store {
        Some(store) => lookup(store, &names).await?,
        None => HashMap::new(),
    };
    let mut problems = Vec::new();
    for person in &plan.people {
        let exists = ids.contains_key(&person.username);
        match (person.account, exists) {
            (Some(_), true) if options.existing == Existing::Fail => problems.push(Problem {
                line: person.line,
                message: format!(
                    "username {:?} is an existing account (--existing skip leaves it as it is)",
                    person.username
                ),
            }),
            (None, false) => problems.push(Problem {
                line: person.line,
                message: format!(
                    "contact {:?} is neither an account of the file nor an existing account",
                    person.username
                ),
            }),
            _ => {}
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        let count = problems.len();
        problems.truncate(file::MAX_LISTED_PROBLEMS);
        return Err(InvalidFile { problems, count }.into());
    }
    let skipped: Vec<bool> =
        plan.accounts.iter().map(|a| ids.contains_key(&a.account.username)).collect();
    let skipped_count = skipped.iter().filter(|s| **s).count();
    let mut report = ImportReport {
        dry_run: options.dry_run,
        lines,
        accounts: plan.accounts.len() - skipped_count,
        skipped_existing: skipped_count,
        devices: 0,
        sessions: 0,
        contact_pairs: plan.pairs.len(),
        seconds: 0.0,
    };
    for (account, skip) in plan.accounts.iter().zip(&skipped) {
        if !skip {
            report.devices += account.devices.len();
            report.sessions += account.sessions.len();
        }
    }
    let Some(store) = store.filter(|_| !options.dry_run) else {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    };

    // Accounts, a transaction per batch. Those known to exist are not sent at all.
    let accounts: Vec<_> = std::mem::take(&mut plan.accounts)
        .into_iter()
        .zip(skipped)
        .filter_map(|(a, skip)| (!skip).then_some(a))
        .collect();
    let writing = bar(options.progress, accounts.len() as u64, "accounts");
    let mut raced = Vec::new();
    let mut written = 0;
    let mut batches = stream::iter(accounts.chunks(IMPORT_BATCH_ACCOUNTS))
        .map(|batch| async move { (batch, store.import_accounts(batch, now).await) })
        .buffer_unordered(options.jobs.max(1));
    while let Some((batch, created)) = batches.next().await {
        let created = created.with_context(|| {
            format!(
                "writing accounts ({written} of {} written before this batch; re-run the same \
                 file with --existing skip to finish)",
                accounts.len()
            )
        })?;
        written += batch.len();
        for (account, created) in batch.iter().zip(created) {
            match created {
                Some(c) => {
                    ids.insert(c.username, c.id);
                }
                // Registered by someone between the check and the write.
                None => raced.push(account.account.username.clone()),
            }
        }
        writing.inc(batch.len() as u64);
    }
    drop(batches);
    writing.finish_and_clear();
    if !raced.is_empty() {
        report.accounts -= raced.len();
        report.skipped_existing += raced.len();
        for account in accounts.iter().filter(|a| raced.contains(&a.account.username)) {
            report.devices -= account.devices.len();
            report.sessions -= account.sessions.len();
        }
        if options.existing == Existing::Fail {
            bail!(
                "{} usernames were registered while the import ran (the first: {:?}); the other \
                 accounts were imported, no contact pair was",
                raced.len(),
                raced.first().cloned().unwrap_or_default()
            );
        }
        ids.extend(lookup(store, &raced).await?);
    }

    // Contact pairs, a transaction per batch.
    let mut pairs = Vec::with_capacity(plan.pairs.len());
    for &(a, b, line) in &plan.pairs {
        let id = |i: u32| {
            let name = plan.people.get(i as usize).map(|p| p.username.as_str()).unwrap_or("");
            ids.get(name).copied().with_context(|| format!("line {line}: {name:?} has no id"))
        };
        pairs.push((id(a)?, id(b)?));
    }
    let writing = bar(options.progress, pairs.len() as u64, "contacts");
    let mut batches = stream::iter(pairs.chunks(IMPORT_BATCH_PAIRS))
        .map(|batch| async move { (batch.len(), store.import_contacts(batch, now).await) })
        .buffer_unordered(options.jobs.max(1));
    while let Some((len, done)) = batches.next().await {
        done.context(
            "writing contact pairs (every account is imported; re-run the same file with \
             --existing skip to finish)",
        )?;
        writing.inc(len as u64);
    }
    writing.finish_and_clear();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The ids of those of `names` that are accounts.
async fn lookup(store: &dyn Store, names: &[String]) -> anyhow::Result<HashMap<String, UserId>> {
    let mut ids = HashMap::with_capacity(names.len());
    for chunk in names.chunks(IMPORT_BATCH_ACCOUNTS) {
        let found = store.user_ids(chunk).await.context("looking up existing usernames")?;
        ids.extend(found);
    }
    Ok(ids)
}
