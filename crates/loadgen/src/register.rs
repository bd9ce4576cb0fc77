//! `register`: creates users `PREFIX0..PREFIX{N-1}` (one connection each, as a new user would),
//! then logs each in once with the password to obtain a session token and saves token and device
//! key in the state file. Both phases are Argon2id-bound on the supernode and timed separately.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde::Serialize;
use tokio::time::Instant;

use crate::dial::{Dialer, Failure, LoginSecret, Tally};
use crate::latency::{Latencies, Summary};
use crate::state_file::{SavedUser, StateFile};
use crate::workers;

/// What `register` was asked to do.
#[derive(Debug, Clone)]
pub struct RegisterPlan {
    /// Users to create.
    pub users: usize,
    /// Username prefix; user `i` is `{prefix}{first + i}`.
    pub prefix: String,
    /// Number of the first user.
    pub first: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The password every user gets.
    pub password: String,
    /// Where tokens and device keys are saved.
    pub state: PathBuf,
    /// No new registration or login starts after this long.
    pub time_limit: Duration,
}

/// One phase (registrations, or the password logins that follow).
#[derive(Debug, Default, Serialize)]
pub struct PhaseReport {
    /// Succeeded.
    pub ok: usize,
    /// Failed, by kind.
    pub failures: Tally,
    /// Not started (time limit).
    pub skipped: usize,
    /// Wall-clock seconds of the phase.
    pub seconds: f64,
    /// `ok / seconds`.
    pub per_second: f64,
    /// Latency of the request itself (after connect and `hello`).
    pub latency: Option<Summary>,
}

/// The result of `register`.
#[derive(Debug, Serialize)]
pub struct RegisterReport {
    /// Always `register`.
    pub command: &'static str,
    /// Users asked for.
    pub users: usize,
    /// Concurrency used.
    pub concurrency: usize,
    /// The registrations.
    pub register: PhaseReport,
    /// Of the users asked for, how many existed already (`username_taken`; not failures).
    pub already_registered: usize,
    /// The password logins that fetched tokens (users already in the state file are skipped).
    pub password_login: PhaseReport,
    /// Users in the state file afterwards.
    pub users_in_state: usize,
}

fn phase(
    results: &[(usize, Result<Duration, Failure>)],
    skipped: usize,
    seconds: f64,
) -> PhaseReport {
    let mut report = PhaseReport { skipped, seconds, ..PhaseReport::default() };
    let mut latencies = Latencies::default();
    for (_, result) in results {
        match result {
            Ok(d) => {
                report.ok += 1;
                latencies.record(*d);
            }
            Err(f) => report.failures.add(f),
        }
    }
    report.per_second = report.ok as f64 / seconds.max(1e-9);
    report.latency = latencies.summary();
    report
}

/// Runs `register`.
pub async fn run(dialer: Arc<Dialer>, plan: RegisterPlan) -> anyhow::Result<RegisterReport> {
    let mut state = StateFile::load(&plan.state)?;
    let deadline = Instant::now() + plan.time_limit;
    let name = {
        let (prefix, first) = (plan.prefix.clone(), plan.first);
        move |i: usize| format!("{prefix}{}", first + i)
    };

    // Phase 1: registrations, one fresh connection each.
    eprintln!("registering {} users…", plan.users);
    let started = Instant::now();
    let outcome = {
        let (dialer, name, password) = (dialer.clone(), name.clone(), plan.password.clone());
        workers::run(plan.concurrency, plan.users, deadline, move |i| {
            let (dialer, username, password) = (dialer.clone(), name(i), password.clone());
            async move {
                let mut session = dialer.connect(i).await?;
                let t = Instant::now();
                let result = session.register(&username, &password).await;
                let took = t.elapsed();
                session.close().await;
                result.map(|()| took)
            }
        })
        .await
    };
    let seconds = started.elapsed().as_secs_f64();
    let taken =
        |r: &Result<Duration, Failure>| matches!(r, Err(f) if f.is_server("username_taken"));
    let already_registered = outcome.results.iter().filter(|(_, r)| taken(r)).count();
    let counted: Vec<_> =
        outcome.results.iter().filter(|(_, r)| !taken(r)).map(|(i, r)| (*i, r.clone())).collect();
    let register = phase(&counted, outcome.skipped, seconds);
    if register.failures.counts.contains_key("server:rate_limited") {
        eprintln!(
            "hint: the supernode limits registrations per source address per hour; \
             give --source-ips a larger range"
        );
    }

    // Phase 2: one password login per existing user not yet in the state file.
    let existing: Vec<usize> = outcome
        .results
        .iter()
        .filter(|(_, r)| r.is_ok() || taken(r))
        .map(|(i, _)| *i)
        .filter(|i| !state.contains(&name(*i)))
        .collect();
    eprintln!("logging {} users in with the password…", existing.len());
    let started = Instant::now();
    let logins = {
        let (dialer, name, password) = (dialer.clone(), name.clone(), plan.password.clone());
        let existing = Arc::new(existing);
        let count = existing.len();
        workers::run(plan.concurrency, count, deadline, move |k| {
            let i = existing.get(k).copied().unwrap_or(k);
            let (dialer, username, password) = (dialer.clone(), name(i), password.clone());
            async move {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let mut session = dialer.connect(i).await?;
                let t = Instant::now();
                let result = session.login(&username, &key, LoginSecret::Password(&password)).await;
                let took = t.elapsed();
                session.close().await;
                result.map(|token| (username, key, token, took))
            }
        })
        .await
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut timed = Vec::with_capacity(logins.results.len());
    for (k, result) in logins.results {
        match result {
            Ok((username, key, token, took)) => {
                state
                    .insert(username, SavedUser { token, device_key: hex::encode(key.to_bytes()) });
                timed.push((k, Ok(took)));
            }
            Err(f) => timed.push((k, Err(f))),
        }
    }
    let password_login = phase(&timed, logins.skipped, seconds);
    state.save(&plan.state)?;
    Ok(RegisterReport {
        command: "register",
        users: plan.users,
        concurrency: plan.concurrency,
        register,
        already_registered,
        password_login,
        users_in_state: state.len(),
    })
}

impl std::fmt::Display for RegisterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.register;
        writeln!(
            f,
            "registered {} of {} users in {:.1} s: {:.1} registrations/s (concurrency {})",
            r.ok, self.users, r.seconds, r.per_second, self.concurrency
        )?;
        if let Some(l) = &r.latency {
            writeln!(f, "  register latency: {l}")?;
        }
        writeln!(
            f,
            "  already registered: {}, failed: {}, not started: {}",
            self.already_registered, r.failures, r.skipped
        )?;
        let p = &self.password_login;
        writeln!(
            f,
            "password logins for tokens: {} in {:.1} s: {:.1} logins/s",
            p.ok, p.seconds, p.per_second
        )?;
        if let Some(l) = &p.latency {
            writeln!(f, "  login latency: {l}")?;
        }
        writeln!(f, "  failed: {}, not started: {}", p.failures, p.skipped)?;
        write!(f, "state file now holds {} users", self.users_in_state)
    }
}
