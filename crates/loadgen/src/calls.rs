//! `calls`: what voice calls cost, measured through a real supernode with the client library on
//! both ends (`peerline_call::place_call` and `answer_call`, tones both ways, real ICE, DTLS-SRTP
//! and Opus). Sequentially, user A calls user B again and again, B answering at once, and the
//! setup times of every call are reported (dial → ringing, connected, first audio); with
//! `--concurrent N`, N pairs of users hold N calls at once and this process's CPU time per active
//! call is reported. Both ends of every call run in this process, so the CPU of one call here is
//! that of its two peers together.
//!
//! Users are registered fresh for every run (random names, device keys in a temporary
//! directory), so a run needs 2 registrations per pair and one invite per call from each caller:
//! a benchmark supernode must allow that (`limits.registrations_per_address_per_hour`,
//! `calls.invites_per_minute`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use peerline_call::media::{AudioError, AudioSink, EndReason, Frame, ToneSource};
use peerline_call::ring;
use peerline_call::{
    CallEnd, CallError, CallOptions, CallProgress, CallSummary, IncomingCall, answer_call,
    place_call,
};
use peerline_client::connection::Endpoint;
use peerline_client::wire::{CallEndReason, ErrorCode, Request};
use peerline_client::{Client, ClientError, ConnectOptions, Home};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dial::{Failure, Tally};
use crate::latency::{Latencies, Summary};
use crate::procfs;

/// How long a call may take from the dial to connected media before the caller hangs up.
const SETUP_LIMIT: Duration = Duration::from_secs(15);
/// How long the callee may take to finish its end of a call once the caller's end returned.
const CALLEE_LIMIT: Duration = Duration::from_secs(15);
/// Extra time, besides setup and talk, before a call that has not returned ends the run.
const CALL_GUARD: Duration = Duration::from_secs(30);
/// Pairs of users created at once. Each user costs two Argon2id hashes (register, login), the
/// supernode hashes two at a time, and a connection must log in within 10 s.
const SETUP_CONCURRENCY: usize = 4;
/// The caller sends a 440 Hz tone and the callee 660 Hz (as in the call tests): real audio for
/// Opus to encode, not silence that DTX would skip.
const CALLER_TONE: f64 = 440.0;
/// See [`CALLER_TONE`].
const CALLEE_TONE: f64 = 660.0;
/// The device name of the test users.
const DEVICE_NAME: &str = "peerline-loadgen";
/// What a concurrent report says about whose CPU it counts.
const BOTH_ENDS: &str = "both ends of every call run in this process: per call = total / calls";

/// What `calls` was asked to do.
#[derive(Debug, Clone)]
pub struct CallsPlan {
    /// `wss://127.0.0.1:PORT`.
    pub supernode: String,
    /// CA file to verify the supernode with; without one, each user pins it on first use.
    pub ca_file: Option<PathBuf>,
    /// The password of the fresh users.
    pub password: String,
    /// How long each call talks once its media is connected.
    pub talk: Duration,
}

/// Refuses a supernode that is not on this machine, as the other subcommands do.
pub async fn check_loopback(url: &str) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(url)?;
    let mut addrs = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .with_context(|| format!("resolving {}", endpoint.host))?;
    if let Some(addr) = addrs.find(|a| !a.ip().is_loopback()) {
        bail!(
            "the load generator only targets loopback supernodes, not {addr}; \
             it is a benchmark tool, not a way to load someone else's server"
        );
    }
    Ok(())
}

/// A sink that drops what it hears: the benchmark measures the call, not a recording.
struct Discard;

impl AudioSink for Discard {
    fn write_frame(&mut self, _frame: &Frame) -> Result<(), AudioError> {
        Ok(())
    }
}

/// A caller and a callee who are each other's contacts, both logged in.
struct Pair {
    caller: Client,
    callee: Client,
    callee_name: String,
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn client_failure(e: &ClientError) -> Failure {
    let kind = e.code().map_or_else(|| "client".to_owned(), |c| format!("server:{}", code_name(c)));
    Failure { kind, detail: e.to_string() }
}

fn call_failure(side: &str, e: &CallError) -> Failure {
    let failure = match e {
        CallError::Client(c) => client_failure(c),
        CallError::Media(_) => Failure { kind: "media".into(), detail: e.to_string() },
        CallError::IdentityChanged(_) | CallError::BadSignature { .. } => {
            Failure { kind: "identity".into(), detail: e.to_string() }
        }
        _ => Failure { kind: "call".into(), detail: e.to_string() },
    };
    Failure { kind: format!("{side}:{}", failure.kind), ..failure }
}

/// How the caller's end of a good call ends: it hung up.
const CALLER_ENDS: &[CallEnd] = &[CallEnd::HungUpHere];
/// How the callee's end of a good call ends: the supernode's `call_ended` (hung up) or, when the
/// caller's DTLS close arrives before that event, the media closed by the peer. Both are the
/// caller's hang-up; the report counts which one each call saw.
const CALLEE_ENDS: &[CallEnd] =
    &[CallEnd::Remote(CallEndReason::HungUp), CallEnd::Media(EndReason::PeerClosed)];

/// Why a finished call does not count as a good one: it did not end as one of `expected`, or
/// its media never connected or carried audio.
fn check(side: &str, summary: &CallSummary, expected: &[CallEnd]) -> Option<Failure> {
    let detail = format!("call {} ended {}", summary.call_id, summary.end.as_str());
    let kind = if !expected.contains(&summary.end) {
        format!("ended:{}", summary.end.as_str())
    } else if summary.timings.connected.is_none() {
        "no_media".to_owned()
    } else if summary.timings.first_audio.is_none() {
        "no_audio".to_owned()
    } else {
        return None;
    };
    Some(Failure { kind: format!("{side}:{kind}"), detail })
}

/// Connects a new user, registers it and logs it in with its password.
async fn new_user(plan: &CallsPlan, homes: &Path, name: &str) -> anyhow::Result<Client> {
    let home = Home::open(&homes.join(name))?;
    let options = ConnectOptions {
        url: plan.supernode.clone(),
        ca_file: plan.ca_file.clone(),
        device_name: DEVICE_NAME.to_owned(),
    };
    let mut client = Client::connect(&options, home)
        .await
        .with_context(|| format!("connecting to {}", plan.supernode))?;
    if let Err(e) = client.register(name, None, &plan.password).await {
        if e.code() == Some(ErrorCode::RateLimited) {
            bail!(
                "registering {name}: {e}. Each run registers 2 users per pair from 127.0.0.1; \
                 raise `limits.registrations_per_address_per_hour` in the supernode's config file"
            );
        }
        return Err(e).with_context(|| format!("registering {name}"));
    }
    client
        .login_with_password(name, &plan.password)
        .await
        .with_context(|| format!("login {name}"))?;
    Ok(client)
}

/// Makes `count` pairs of fresh users, each pair contacts of each other.
async fn make_pairs(plan: &CallsPlan, homes: &Path, count: usize) -> anyhow::Result<Vec<Pair>> {
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let slots = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut set = JoinSet::new();
    for n in 0..count {
        let (plan, homes, slots, run) =
            (plan.clone(), homes.to_path_buf(), slots.clone(), run.clone());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            let (a, b) = (format!("call-{run}-a{n}"), format!("call-{run}-b{n}"));
            let caller = new_user(&plan, &homes, &a).await?;
            let callee = new_user(&plan, &homes, &b).await?;
            let add = Request::ContactAdd { username: b.clone(), message: None };
            caller.done(add).await.with_context(|| format!("{a} adding {b} as a contact"))?;
            let accept = Request::ContactAccept { username: a.clone() };
            callee.done(accept).await.with_context(|| format!("{b} accepting {a}"))?;
            anyhow::Ok((n, Pair { caller, callee, callee_name: b }))
        });
    }
    let mut pairs = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        pairs.push(joined.context("a user setup task failed")??);
    }
    pairs.sort_by_key(|(n, _)| *n);
    Ok(pairs.into_iter().map(|(_, pair)| pair).collect())
}

/// Answers every incoming call at once (ringing first, so the caller sees `ringing`) with a
/// tone, until the caller hangs up; sends each call's outcome on `done`. Runs until aborted or
/// the connection closes.
async fn answer_calls(
    mut client: Client,
    done: mpsc::UnboundedSender<Result<CallSummary, CallError>>,
) {
    loop {
        let incoming = loop {
            match client.next_event().await {
                Some(event) => {
                    if let Some(call) = IncomingCall::from_event(&event) {
                        break call;
                    }
                }
                None => {
                    let _ = done.send(Err(ClientError::Closed(None).into()));
                    return;
                }
            }
        };
        let result = match ring(&client, &incoming).await {
            Ok(()) => {
                let tone = ToneSource::new(CALLEE_TONE);
                let (options, never) = (CallOptions::default(), std::future::pending());
                answer_call(&mut client, incoming, tone, Discard, options, never, &mut |_| {}).await
            }
            Err(e) => Err(e.into()),
        };
        if done.send(result).is_err() {
            return;
        }
    }
}

/// One call as the caller: dial, talk `talk` after the media connected (hang up at once if it
/// did not connect within [`SETUP_LIMIT`]), hang up. Also says whether the invite went out (then
/// the callee has a call to finish too).
async fn call_once(
    client: &mut Client,
    to: &str,
    talk: Duration,
) -> (Result<CallSummary, CallError>, bool) {
    let (connected_tx, connected_rx) = oneshot::channel();
    let mut connected_tx = Some(connected_tx);
    let mut dialed = false;
    let hang_up = async move {
        if let Ok(Ok(())) = tokio::time::timeout(SETUP_LIMIT, connected_rx).await {
            tokio::time::sleep(talk).await;
        }
    };
    let mut progress = |p: CallProgress| match p {
        CallProgress::Dialing { .. } => dialed = true,
        CallProgress::Connected { .. } => {
            if let Some(tx) = connected_tx.take() {
                let _ = tx.send(());
            }
        }
        _ => {}
    };
    let tone = ToneSource::new(CALLER_TONE);
    let result =
        place_call(client, to, tone, Discard, CallOptions::default(), hang_up, &mut progress).await;
    (result, dialed)
}

/// Setup times of the callers' ends, from the dial.
#[derive(Debug, Default)]
struct SetupLatencies {
    ringing: Latencies,
    connected: Latencies,
    first_audio: Latencies,
}

impl SetupLatencies {
    fn record(&mut self, summary: &CallSummary) {
        let t = &summary.timings;
        for (latencies, time) in [
            (&mut self.ringing, t.ringing),
            (&mut self.connected, t.connected),
            (&mut self.first_audio, t.first_audio),
        ] {
            if let Some(time) = time {
                latencies.record(time);
            }
        }
    }
}

/// The result of sequential `calls`.
#[derive(Debug, Serialize)]
pub struct SequentialReport {
    /// Always `calls`.
    pub command: &'static str,
    /// Always `sequential`.
    pub mode: &'static str,
    /// Calls asked for.
    pub calls: usize,
    /// Calls that connected, carried audio both ways and ended with the caller's hang-up.
    pub ok: usize,
    /// Calls that did not, by kind (`caller:…` or `callee:…`).
    pub failures: Tally,
    /// Seconds each call talked after it connected.
    pub talk_secs: f64,
    /// Wall-clock seconds of all calls.
    pub seconds: f64,
    /// From the dial (before candidates are gathered) to the callee's `call_ringing`.
    pub dial_to_ringing: Option<Summary>,
    /// From the dial to ICE and DTLS being up.
    pub dial_to_connected: Option<Summary>,
    /// From the dial to the first audio packet from the callee.
    pub dial_to_first_audio: Option<Summary>,
    /// Calls whose media went directly between the two sockets.
    pub direct_paths: usize,
    /// How the callees' ends of the calls ended (`hung_up`: the supernode's `call_ended` came
    /// first; `peer_closed_media`: the caller's DTLS close came first).
    pub callee_ends: BTreeMap<&'static str, u64>,
}

/// Runs `calls` calls from one fresh user to another, one after another.
pub async fn run_sequential(plan: CallsPlan, calls: usize) -> anyhow::Result<SequentialReport> {
    let homes = tempfile::tempdir().context("creating a temporary directory for device keys")?;
    eprintln!("registering two users…");
    let pair = make_pairs(&plan, homes.path(), 1).await?.pop().context("no users were made")?;
    let Pair { mut caller, callee, callee_name } = pair;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let callee_task = tokio::spawn(answer_calls(callee, done_tx));
    let talk_secs = plan.talk.as_secs_f64();
    eprintln!("{calls} calls A→B one at a time, each talking {talk_secs} s after it connected…");

    let started = Instant::now();
    let (mut ok, mut failures) = (0, Tally::default());
    let mut latencies = SetupLatencies::default();
    let mut direct_paths = 0;
    let mut callee_ends = BTreeMap::new();
    for _ in 0..calls {
        let guard = SETUP_LIMIT + plan.talk + CALL_GUARD;
        let Ok((result, dialed)) =
            tokio::time::timeout(guard, call_once(&mut caller, &callee_name, plan.talk)).await
        else {
            let detail = format!("a call did not return within {guard:?}; run stopped");
            failures.add(&Failure { kind: "caller:timeout".into(), detail });
            break;
        };
        let mut failure = match &result {
            Ok(summary) => {
                latencies.record(summary);
                direct_paths += usize::from(summary.path.is_some_and(|p| p.is_direct()));
                check("caller", summary, CALLER_ENDS)
            }
            Err(e) => Some(call_failure("caller", e)),
        };
        // The callee must be done with this call before the next one rings, or it would be
        // refused as busy.
        if dialed {
            let callee_failure = match tokio::time::timeout(CALLEE_LIMIT, done_rx.recv()).await {
                Ok(Some(Ok(summary))) => {
                    *callee_ends.entry(summary.end.as_str()).or_default() += 1;
                    check("callee", &summary, CALLEE_ENDS)
                }
                Ok(Some(Err(e))) => Some(call_failure("callee", &e)),
                Ok(None) => Some(Failure {
                    kind: "callee:stopped".into(),
                    detail: "the callee stopped answering".into(),
                }),
                Err(_) => Some(Failure {
                    kind: "callee:timeout".into(),
                    detail: format!("the callee's end did not finish within {CALLEE_LIMIT:?}"),
                }),
            };
            failure = failure.or(callee_failure);
        }
        match failure {
            None => ok += 1,
            Some(f) => failures.add(&f),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    callee_task.abort();
    Ok(SequentialReport {
        command: "calls",
        mode: "sequential",
        calls,
        ok,
        failures,
        talk_secs,
        seconds,
        dial_to_ringing: latencies.ringing.summary(),
        dial_to_connected: latencies.connected.summary(),
        dial_to_first_audio: latencies.first_audio.summary(),
        direct_paths,
        callee_ends,
    })
}

/// The result of `calls --concurrent`.
#[derive(Debug, Serialize)]
pub struct ConcurrentReport {
    /// Always `calls`.
    pub command: &'static str,
    /// Always `concurrent`.
    pub mode: &'static str,
    /// Simultaneous calls asked for (one per pair of users).
    pub calls: usize,
    /// Calls connected when the CPU measurement started.
    pub active: usize,
    /// Calls that connected, carried audio both ways and ended with the caller's hang-up.
    pub ok: usize,
    /// Calls that did not, by kind.
    pub failures: Tally,
    /// Seconds from the first dial until all calls were connected (or the setup limit).
    pub setup_secs: f64,
    /// Seconds of the measurement, from the last call connected to the hang-ups.
    pub window_secs: f64,
    /// CPU seconds (user + system) this process used in the window.
    pub cpu_seconds: f64,
    /// The same as a percentage of one core.
    pub cpu_percent_of_one_core: f64,
    /// `cpu_percent_of_one_core / active`: one call, both of its ends.
    pub cpu_percent_of_one_core_per_call: f64,
    /// Whose CPU this is.
    pub note: &'static str,
    /// RTP audio packets received over all calls, both ends.
    pub audio_packets_received: u64,
    /// How the callees' ends of the calls ended (`hung_up`: the supernode's `call_ended` came
    /// first; `peer_closed_media`: the caller's DTLS close came first).
    pub callee_ends: BTreeMap<&'static str, u64>,
    /// From the dial to the callee's `call_ringing`.
    pub dial_to_ringing: Option<Summary>,
    /// From the dial to ICE and DTLS being up.
    pub dial_to_connected: Option<Summary>,
    /// From the dial to the first audio from the callee.
    pub dial_to_first_audio: Option<Summary>,
}

/// Dials `pairs` calls at once, waits until all are connected, measures this process's CPU for
/// `plan.talk`, then hangs all up.
pub async fn run_concurrent(plan: CallsPlan, pairs: usize) -> anyhow::Result<ConcurrentReport> {
    let homes = tempfile::tempdir().context("creating a temporary directory for device keys")?;
    eprintln!("registering {} users in {pairs} pairs…", 2 * pairs);
    let made = make_pairs(&plan, homes.path(), pairs).await?;
    let (hang_up_tx, hang_up_rx) = watch::channel(false);
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel::<()>();
    let (callee_tx, mut callee_rx) = mpsc::unbounded_channel();
    let mut callers = JoinSet::new();
    let mut callees = Vec::with_capacity(pairs);
    eprintln!("{pairs} calls at once, held {} s after all connected…", plan.talk.as_secs_f64());
    let started = Instant::now();
    for Pair { mut caller, callee, callee_name } in made {
        callees.push(tokio::spawn(answer_calls(callee, callee_tx.clone())));
        let (mut hang_up, connected) = (hang_up_rx.clone(), connected_tx.clone());
        callers.spawn(async move {
            let stop = async move {
                let _ = hang_up.wait_for(|now| *now).await;
            };
            let mut told = false;
            let mut progress = |p: CallProgress| {
                if matches!(p, CallProgress::Connected { .. }) && !told {
                    told = true;
                    let _ = connected.send(());
                }
            };
            let tone = ToneSource::new(CALLER_TONE);
            let options = CallOptions::default();
            place_call(&mut caller, &callee_name, tone, Discard, options, stop, &mut progress).await
        });
    }
    drop((connected_tx, callee_tx));

    let mut active = 0;
    let setup_deadline = started + SETUP_LIMIT;
    while active < pairs
        && let Ok(Some(())) = tokio::time::timeout_at(setup_deadline, connected_rx.recv()).await
    {
        active += 1;
    }
    let setup_secs = started.elapsed().as_secs_f64();
    let pid = std::process::id();
    let cpu_before = procfs::cpu_seconds(pid)?;
    let window_start = Instant::now();
    tokio::time::sleep(plan.talk).await;
    let cpu_seconds = procfs::cpu_seconds(pid)? - cpu_before;
    let window_secs = window_start.elapsed().as_secs_f64();
    let _ = hang_up_tx.send(true);

    // A call is good when both of its ends are: good callers' call ids, less those whose callee
    // end failed.
    let (mut good, mut failures) = (HashSet::new(), Tally::default());
    let mut latencies = SetupLatencies::default();
    let mut audio_packets_received = 0;
    let mut callee_ends = BTreeMap::new();
    let packets = |s: &CallSummary| s.media.as_ref().map_or(0, |m| m.media.packets_received);
    let guard = SETUP_LIMIT + CALL_GUARD;
    let mut returned = 0;
    while let Ok(Some(joined)) = tokio::time::timeout(guard, callers.join_next()).await {
        returned += 1;
        match joined {
            Ok(Ok(summary)) => {
                latencies.record(&summary);
                audio_packets_received += packets(&summary);
                match check("caller", &summary, CALLER_ENDS) {
                    None => {
                        good.insert(summary.call_id);
                    }
                    Some(f) => failures.add(&f),
                }
            }
            Ok(Err(e)) => failures.add(&call_failure("caller", &e)),
            Err(e) => failures.add(&Failure { kind: "caller:task".into(), detail: e.to_string() }),
        }
    }
    for _ in returned..pairs {
        let detail = format!("a call did not return within {guard:?} of the hang-up");
        failures.add(&Failure { kind: "caller:timeout".into(), detail });
    }
    callers.abort_all();
    let callee_deadline = Instant::now() + CALLEE_LIMIT;
    let mut callee_results = 0;
    while callee_results < pairs
        && let Ok(Some(result)) = tokio::time::timeout_at(callee_deadline, callee_rx.recv()).await
    {
        callee_results += 1;
        match result {
            Ok(summary) => {
                audio_packets_received += packets(&summary);
                *callee_ends.entry(summary.end.as_str()).or_default() += 1;
                if let Some(f) = check("callee", &summary, CALLEE_ENDS) {
                    good.remove(&summary.call_id);
                    failures.add(&f);
                }
            }
            Err(e) => failures.add(&call_failure("callee", &e)),
        }
    }
    for task in callees {
        task.abort();
    }

    let cpu_percent = 100.0 * cpu_seconds / window_secs.max(1e-9);
    Ok(ConcurrentReport {
        command: "calls",
        mode: "concurrent",
        calls: pairs,
        active,
        ok: good.len(),
        failures,
        setup_secs,
        window_secs,
        cpu_seconds,
        cpu_percent_of_one_core: cpu_percent,
        cpu_percent_of_one_core_per_call: if active == 0 {
            0.0
        } else {
            cpu_percent / active as f64
        },
        note: BOTH_ENDS,
        audio_packets_received,
        callee_ends,
        dial_to_ringing: latencies.ringing.summary(),
        dial_to_connected: latencies.connected.summary(),
        dial_to_first_audio: latencies.first_audio.summary(),
    })
}

fn write_setup(
    f: &mut std::fmt::Formatter<'_>,
    rows: [(&str, &Option<Summary>); 3],
) -> std::fmt::Result {
    for (what, summary) in rows {
        match summary {
            Some(s) => writeln!(f, "  {what}: {s}")?,
            None => writeln!(f, "  {what}: no samples")?,
        }
    }
    Ok(())
}

fn write_callee_ends(
    f: &mut std::fmt::Formatter<'_>,
    ends: &BTreeMap<&'static str, u64>,
) -> std::fmt::Result {
    let ends: Vec<String> = ends.iter().map(|(end, n)| format!("{n} × {end}")).collect();
    writeln!(f, "  callee's end of the calls: {}", ends.join(", "))
}

fn write_failures(f: &mut std::fmt::Formatter<'_>, failures: &Tally) -> std::fmt::Result {
    write!(f, "  failed: {failures}")?;
    if failures.counts.keys().any(|k| k.ends_with("server:rate_limited")) {
        write!(
            f,
            "\n  hint: the supernode allows 10 call invites per user per minute by default; \
             set `[calls] invites_per_minute` higher in its config file for this benchmark"
        )?;
    }
    Ok(())
}

impl std::fmt::Display for SequentialReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} of {} calls A→B good in {:.1} s (one at a time, {} s of talk each, {} direct)",
            self.ok, self.calls, self.seconds, self.talk_secs, self.direct_paths
        )?;
        write_setup(
            f,
            [
                ("dial→ringing", &self.dial_to_ringing),
                ("dial→connected", &self.dial_to_connected),
                ("dial→first audio", &self.dial_to_first_audio),
            ],
        )?;
        write_callee_ends(f, &self.callee_ends)?;
        write_failures(f, &self.failures)
    }
}

impl std::fmt::Display for ConcurrentReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} of {} simultaneous calls connected (in {:.1} s), {} good",
            self.active, self.calls, self.setup_secs, self.ok
        )?;
        writeln!(
            f,
            "  CPU of this process over {:.1} s with all connected: {:.2} s = {:.1} % of one core; \
             {:.2} % of one core per call ({})",
            self.window_secs,
            self.cpu_seconds,
            self.cpu_percent_of_one_core,
            self.cpu_percent_of_one_core_per_call,
            self.note
        )?;
        writeln!(f, "  audio packets received, all ends: {}", self.audio_packets_received)?;
        write_setup(
            f,
            [
                ("dial→ringing", &self.dial_to_ringing),
                ("dial→connected", &self.dial_to_connected),
                ("dial→first audio", &self.dial_to_first_audio),
            ],
        )?;
        write_callee_ends(f, &self.callee_ends)?;
        write_failures(f, &self.failures)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_non_loopback_targets() {
        assert!(check_loopback("wss://192.0.2.1:7443").await.is_err());
        assert!(check_loopback("wss://127.0.0.1:7443").await.is_ok());
    }

    /// Counts only (benchmarks are never timed tests). Needs the supernode binary built, like the
    /// end-to-end tests (`cargo build --bins`).
    #[tokio::test]
    async fn calls_connect_and_carry_audio_through_a_real_supernode() {
        let node = peerline_testkit::Supernode::start().unwrap();
        let plan = CallsPlan {
            supernode: node.url.clone(),
            ca_file: None,
            password: "calls-test-password".into(),
            talk: Duration::from_millis(300),
        };
        let sequential = run_sequential(plan.clone(), 2).await.unwrap();
        assert_eq!((sequential.ok, sequential.failures.total()), (2, 0), "{sequential}");
        assert_eq!(sequential.dial_to_first_audio.map(|s| s.count), Some(2), "{sequential}");

        let concurrent = run_concurrent(plan, 2).await.unwrap();
        assert_eq!((concurrent.active, concurrent.ok), (2, 2), "{concurrent}");
        assert!(concurrent.audio_packets_received > 0, "{concurrent}");
        assert!(concurrent.cpu_percent_of_one_core_per_call >= 0.0, "{concurrent}");
    }
}
