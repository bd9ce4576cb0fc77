//! `peerline echo-service`: the echo test bot. It accepts every contact request, answers every
//! call, plays back what it hears two seconds later, and afterwards messages the caller how long
//! the call took to set up and which path it took, so a new user can check microphone, speaker
//! and connectivity.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use peerline_call::media::{AudioError, AudioSink, AudioSource, FRAME_SAMPLES, Frame};
use peerline_call::{CallOptions, CallSummary, IncomingCall, ring};
use peerline_client::wire::{ContactState, Event, Request};
use peerline_client::{Client, ConnectOptions, Home};
use rand::RngCore;
use tracing::{info, warn};

use crate::output::Out;

/// The longest an echo call lasts, so a forgotten call does not hold the bot forever.
const MAX_CALL: Duration = Duration::from_secs(600);

/// Frames waiting to be played back, shared by the call's sink (what the bot hears) and source
/// (what it says).
type DelayLine = Arc<Mutex<VecDeque<Frame>>>;

/// Plays back what [`EchoSink`] heard, `delay` later.
struct EchoSource(DelayLine);

/// Feeds what the bot hears into the delay line.
struct EchoSink(DelayLine);

fn echo_pair(delay: Duration) -> (EchoSource, EchoSink) {
    let frames = usize::try_from(delay.as_millis() / 20).unwrap_or(0);
    let line: DelayLine =
        Arc::new(Mutex::new(std::iter::repeat_n([0; FRAME_SAMPLES], frames).collect()));
    (EchoSource(line.clone()), EchoSink(line))
}

impl AudioSource for EchoSource {
    fn next_frame(&mut self) -> Option<Frame> {
        let mut line = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Some(line.pop_front().unwrap_or([0; FRAME_SAMPLES]))
    }
}

impl AudioSink for EchoSink {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), AudioError> {
        let mut line = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: at most 10 s of audio waits (the source takes one frame per frame).
        if line.len() < 500 {
            line.push_back(*frame);
        }
        Ok(())
    }
}

fn describe(summary: &CallSummary) -> String {
    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()));
    let path = summary.path.map_or("no media path".to_owned(), |p| {
        format!(
            "{} ({} ↔ {}, {})",
            if p.is_direct() { "direct" } else { "relayed" },
            p.selected.local_type,
            p.selected.remote_type,
            p.transport()
        )
    });
    let mut text = format!(
        "Echo test: call set up in {} (first audio after {}), path {path}.",
        ms(summary.timings.connected),
        ms(summary.timings.first_audio)
    );
    if let Some(stats) = &summary.media {
        let m = &stats.media;
        text.push_str(&format!(
            " I received {} packets from you, {} lost.",
            m.packets_received, m.packets_lost
        ));
    }
    text
}

/// How the bot trusts its supernode, besides the home's pin.
#[derive(Debug, Clone, Copy)]
pub struct Trusting {
    /// The certificate fingerprint to expect (`--fingerprint`).
    pub expected: Option<[u8; 32]>,
    /// Whether a person at the terminal can be asked before the bot's password goes to a
    /// supernode trusted on first use.
    pub interactive: bool,
}

/// The file in the bot's home that keeps its generated password.
const PASSWORD_FILE: &str = "echo-service.password";

/// The home the bot runs from, which is its own: a home logged in as the bot (or one that keeps
/// the bot's password, from an earlier run) is used as it is; any other — typically the home of
/// the person who started the service, logged in as alice — gets a separate home for the bot
/// under `services/USERNAME`, so the bot never acts as alice (accepting her contact requests,
/// answering her calls). The person's trust in the network (pin, CA file) is carried over.
pub fn bot_home(home: &Home, urls: &[String], username: &str) -> anyhow::Result<Home> {
    let network = home.network(urls)?;
    let own = match &network.session {
        Some(session) => session.username.eq_ignore_ascii_case(username),
        None => home.dir().join(PASSWORD_FILE).exists(),
    };
    if own {
        return Ok(home.clone());
    }
    // The name becomes a directory: only a valid username (no `/`, nothing outside a-z 0-9 . _ -).
    let name = peerline_client::wire::validate::username(username).map_err(|_| {
        anyhow::anyhow!("`{username}` is not a valid username (3-32 characters of a-z 0-9 . _ -)")
    })?;
    let dir = home.dir().join("services").join(name);
    let bot =
        Home::open(&dir).with_context(|| format!("opening the bot's home {}", dir.display()))?;
    if let Some(pin) = network.pin {
        bot.pin(urls, pin, false)?;
    }
    if let Some(ca) = network.ca_file {
        bot.update_network(urls, |n| {
            n.ca_file.get_or_insert(ca);
        })?;
    }
    Ok(bot)
}

/// Logs the bot in: the saved session, or registration (first run) with a password kept in
/// the home directory so the bot can log in again when its token expires.
async fn log_in(
    options: &ConnectOptions,
    trusting: Trusting,
    home: &Home,
    out: &Out,
    username: &str,
) -> anyhow::Result<Client> {
    let connect = || Client::connect_expecting(options, trusting.expected, home.clone());
    let mut client = connect().await?;
    crate::trust::note_first_use(out, &client);
    if client.login_saved().await.is_ok() {
        return Ok(client);
    }
    let confirmed =
        crate::trust::confirm_before_password(client, trusting.interactive, &options.urls())?;
    let mut client = match confirmed {
        Some(client) => client,
        None => connect().await?,
    };
    let password_file = home.dir().join(PASSWORD_FILE);
    let password = match std::env::var("PEERLINE_PASSWORD") {
        Ok(p) => p,
        Err(_) => match std::fs::read_to_string(&password_file) {
            Ok(p) => p.trim().to_owned(),
            Err(_) => {
                let mut bytes = [0u8; 24];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let p = hex::encode(bytes);
                write_private(&password_file, &p)?;
                p
            }
        },
    };
    if client.login_with_password(username, &password).await.is_err() {
        client
            .register(username, Some("Echo test service"), &password)
            .await
            .with_context(|| format!("registering the echo account {username}"))?;
        client.login_with_password(username, &password).await?;
    }
    Ok(client)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs the echo service until Ctrl-C (or `exit_after` seconds).
pub async fn run(
    options: &ConnectOptions,
    trusting: Trusting,
    home: &Home,
    out: &Out,
    username: &str,
    delay: Duration,
    exit_after: Option<u64>,
) -> anyhow::Result<()> {
    let home = bot_home(home, &options.urls(), username)?;
    let mut client = log_in(options, trusting, &home, out, username).await?;
    let me = client.username().unwrap_or(username).to_owned();
    out.done(&format!("Echo service running as {me}; call it to test your audio."));
    for c in client.contacts().await? {
        if c.state == ContactState::Incoming {
            accept_contact(&client, &c.username).await;
        }
    }
    let stop = crate::calls::hang_up_after(exit_after.map(|s| s as f64));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            event = client.next_event() => {
                let Some(event) = event else {
                    // Its supernode is gone: go on with another of the network.
                    let back = tokio::select! {
                        () = &mut stop => return Ok(()),
                        back = client.reconnect() => back?,
                    };
                    info!(supernode = %back.url, "echo service reconnected");
                    continue;
                };
                match &event {
                    Event::ContactRequest { username, .. } => accept_contact(&client, username).await,
                    Event::Message { message } if message.to == me => {
                        let _ = client.done(Request::AckDelivered { ids: vec![message.id] }).await;
                    }
                    Event::MissedCall { missed } => {
                        let _ = client.done(Request::AckMissedCalls { ids: vec![missed.id] }).await;
                    }
                    _ => {}
                }
                if let Some(call) = IncomingCall::from_event(&event) {
                    echo_call(&mut client, call, delay).await;
                }
            }
        }
    }
}

async fn accept_contact(client: &Client, username: &str) {
    match client.done(Request::ContactAccept { username: username.to_owned() }).await {
        Ok(()) => info!(%username, "accepted a contact request"),
        Err(e) => warn!(%username, error = %e, "could not accept a contact request"),
    }
}

/// One echo call. Calls are taken one at a time; a second caller hears busy meanwhile.
async fn echo_call(client: &mut Client, call: IncomingCall, delay: Duration) {
    let caller = call.from.clone();
    let rang_at = crate::call_log::now_ms();
    if let Err(e) = ring(client, &call).await {
        warn!(error = %e, "the call ended before it rang");
        return;
    }
    let (source, sink) = echo_pair(delay);
    let result = peerline_call::answer_call(
        client,
        call,
        source,
        sink,
        CallOptions::default(),
        tokio::time::sleep(MAX_CALL),
        &mut |_| {},
    )
    .await;
    match result {
        Ok(summary) => {
            info!(%caller, end = summary.end.as_str(), "echo call ended");
            crate::call_log::report(client, &summary, false, rang_at).await;
            if summary.timings.connected.is_some()
                && let Err(e) = client.send_message(&caller, &describe(&summary)).await
            {
                warn!(error = %e, "could not send the echo report");
            }
        }
        Err(e) => warn!(%caller, error = %e, "echo call failed"),
    }
}
