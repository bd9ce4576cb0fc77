//! `login`: logs saved users in, each on a fresh connection (TCP, full TLS handshake, WebSocket,
//! `hello`, `login`), with a session token (the cheap path every reconnect takes) or with the
//! password (Argon2id), then disconnects. Reports logins per second and latencies.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::dial::{Dialer, Failure, LoginSecret, Tally};
use crate::latency::{Latencies, Summary};
use crate::state_file::SavedUser;
use crate::workers;

/// What `login` was asked to do.
#[derive(Debug, Clone)]
pub struct LoginPlan {
    /// Users to log in, from the state file.
    pub users: Vec<(String, SavedUser)>,
    /// Logins in flight at once.
    pub concurrency: usize,
    /// Log in with this password instead of the saved token.
    pub password: Option<String>,
    /// No new login starts after this long.
    pub time_limit: Duration,
}

/// The result of `login`.
#[derive(Debug, Serialize)]
pub struct LoginReport {
    /// Always `login`.
    pub command: &'static str,
    /// `token` or `password`.
    pub method: &'static str,
    /// Logins asked for.
    pub users: usize,
    /// Concurrency used.
    pub concurrency: usize,
    /// Succeeded.
    pub ok: usize,
    /// Failed, by kind.
    pub failures: Tally,
    /// Not started (time limit).
    pub skipped: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// `ok / seconds`: complete connect-and-login cycles per second.
    pub logins_per_second: f64,
    /// TCP connect + TLS handshake + WebSocket upgrade + `hello`.
    pub connect_latency: Option<Summary>,
    /// The `login` request alone.
    pub login_latency: Option<Summary>,
    /// From the TCP connect to the `logged_in` answer.
    pub total_latency: Option<Summary>,
}

struct Timing {
    connect: Duration,
    login: Duration,
}

async fn one(
    dialer: &Dialer,
    n: usize,
    username: &str,
    user: &SavedUser,
    password: Option<&str>,
) -> Result<Timing, Failure> {
    let key =
        user.signing_key().map_err(|e| Failure { kind: "state".into(), detail: e.to_string() })?;
    let started = Instant::now();
    let mut session = dialer.connect(n).await?;
    let connected = Instant::now();
    let secret = match password {
        Some(p) => LoginSecret::Password(p),
        None => LoginSecret::Token(&user.token),
    };
    let result = session.login(username, &key, secret).await;
    let timing = Timing { connect: connected - started, login: connected.elapsed() };
    session.close().await;
    result.map(|_token| timing)
}

/// Runs `login`.
pub async fn run(dialer: Arc<Dialer>, plan: LoginPlan) -> LoginReport {
    let count = plan.users.len();
    let method = if plan.password.is_some() { "password" } else { "token" };
    eprintln!("{count} {method} logins, concurrency {}…", plan.concurrency);
    let deadline = Instant::now() + plan.time_limit;
    let started = Instant::now();
    let users = Arc::new(plan.users);
    let password: Option<Arc<str>> = plan.password.map(Into::into);
    let outcome = workers::run(plan.concurrency, count, deadline, move |n| {
        let (dialer, users, password) = (dialer.clone(), users.clone(), password.clone());
        async move {
            let (username, user) = users.get(n).ok_or_else(|| Failure {
                kind: "state".into(),
                detail: format!("no user number {n}"),
            })?;
            one(&dialer, n, username, user, password.as_deref()).await
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();

    let mut failures = Tally::default();
    let mut connect = Latencies::default();
    let mut login = Latencies::default();
    let mut total = Latencies::default();
    let mut ok = 0;
    for (_, result) in outcome.results {
        match result {
            Ok(t) => {
                ok += 1;
                connect.record(t.connect);
                login.record(t.login);
                total.record(t.connect + t.login);
            }
            Err(f) => failures.add(&f),
        }
    }
    LoginReport {
        command: "login",
        method,
        users: count,
        concurrency: plan.concurrency,
        ok,
        failures,
        skipped: outcome.skipped,
        seconds,
        logins_per_second: ok as f64 / seconds.max(1e-9),
        connect_latency: connect.summary(),
        login_latency: login.summary(),
        total_latency: total.summary(),
    }
}

impl std::fmt::Display for LoginReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} {} logins of {} in {:.1} s: {:.1} logins/s (concurrency {}, each on a new TLS connection)",
            self.ok,
            self.method,
            self.users,
            self.seconds,
            self.logins_per_second,
            self.concurrency
        )?;
        for (what, summary) in [
            ("connect+TLS+upgrade+hello", &self.connect_latency),
            ("login request", &self.login_latency),
            ("total", &self.total_latency),
        ] {
            if let Some(s) = summary {
                writeln!(f, "  {what}: {s}")?;
            }
        }
        write!(f, "  failed: {}, not started: {}", self.failures, self.skipped)
    }
}
