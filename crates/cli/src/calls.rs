//! The call commands: `peerline call USER`, answering in `peerline online`, and the audio each
//! call uses (WAV files, or the sound card when there is one).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use peerline_call::media::{AudioSink, AudioSource, WavSink, WavSource};
use peerline_call::{
    CallOptions, CallPath, CallProgress, CallSummary, IncomingCall, KeyCheck, decline, ring,
};
use peerline_client::Client;
use peerline_client::wire::Event;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::output::Out;
use crate::peer_devices::Identity;
use crate::sanitize::Escaped;

/// The outgoing and incoming audio of a call.
pub type Audio = (Box<dyn AudioSource>, Box<dyn AudioSink>);

/// Opens `--play` (looped) and `--record`, or the default sound devices where they are missing.
pub fn open_audio(play: Option<&Path>, record: Option<&Path>) -> anyhow::Result<Audio> {
    let source: Box<dyn AudioSource> = match play {
        Some(path) => Box::new(WavSource::open(path, true)?),
        None => Box::new(peerline_call::media::open_microphone()?),
    };
    let sink: Box<dyn AudioSink> = match record {
        Some(path) => Box::new(WavSink::create(path)?),
        None => Box::new(peerline_call::media::open_speaker()?),
    };
    Ok((source, sink))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn path_json(path: &CallPath) -> Value {
    let selected = &path.selected;
    json!({
        "kind": if path.is_direct() { "direct" } else { "relay" },
        "local_type": selected.local_type.as_str(),
        "remote_type": selected.remote_type.as_str(),
        "transport": path.transport(),
        "local": selected.local_addr.to_string(),
        "remote": selected.remote_addr.to_string(),
        "relay_server": path.relay.map(|r| r.server.to_string()),
    })
}

/// Prints call progress as text lines or JSON lines. A device of `peer` that the call pinned
/// as new ([`KeyCheck::NewDevice`]) is announced before the answer, with `identity`'s safety
/// number.
pub fn progress_printer(
    out: &Out,
    peer: &str,
    identity: Identity,
) -> impl FnMut(CallProgress) + Send + use<> {
    let json = out.is_json();
    let peer = peer.to_owned();
    move |progress| {
        if let CallProgress::Answered { device_id, key: KeyCheck::NewDevice, .. } = &progress {
            println!("{}", identity.new_device(&peer, *device_id).line(json));
        }
        if json {
            let line = match &progress {
                CallProgress::Dialing { call_id, devices } => {
                    json!({"event": "dialing", "call_id": call_id, "peer": peer, "devices": devices})
                }
                CallProgress::Ringing { after } => {
                    json!({"event": "ringing", "dial_to_ringing_ms": ms(*after)})
                }
                CallProgress::Answered { after, device_id, key } => json!({
                    "event": "answered",
                    "after_ms": ms(*after),
                    "device_id": device_id,
                    "device_key": if key.pinned_now() { "pinned_now" } else { "known" },
                }),
                CallProgress::Connected { after } => {
                    json!({"event": "connected", "dial_to_connected_ms": ms(*after)})
                }
                CallProgress::Path(path) => json!({"event": "path", "path": path_json(path)}),
                CallProgress::FirstAudio { after } => {
                    json!({"event": "first_audio", "dial_to_first_audio_ms": ms(*after)})
                }
                CallProgress::PathLost => json!({"event": "path_lost"}),
                CallProgress::PathBack => json!({"event": "path_back"}),
                CallProgress::Restarting => json!({"event": "ice_restart"}),
            };
            println!("{line}");
        } else {
            let peer = Escaped(&peer);
            match &progress {
                CallProgress::Dialing { devices, .. } => {
                    println!("Calling {peer} ({devices} device(s) ringing)…")
                }
                CallProgress::Ringing { after } => println!("Ringing ({} ms)", ms(*after)),
                CallProgress::Answered { device_id, key, .. } => println!(
                    "Answered by {peer}'s device {device_id}{}",
                    if *key == KeyCheck::NewlyPinned {
                        format!(
                            " (its key is now pinned; compare safety numbers with `peerline \
                             verify {peer}`)"
                        )
                    } else {
                        String::new()
                    }
                ),
                CallProgress::Connected { after } => println!("Connected in {} ms", ms(*after)),
                CallProgress::Path(path) => println!(
                    "Path: {} ({} ↔ {}, {})",
                    if path.is_direct() { "direct" } else { "relayed" },
                    path.selected.local_type,
                    path.selected.remote_type,
                    path.transport()
                ),
                CallProgress::FirstAudio { after } => {
                    println!("Hearing {peer} ({} ms after dialing)", ms(*after))
                }
                CallProgress::PathLost => println!("Connection to {peer} lost, reconnecting…"),
                CallProgress::PathBack => println!("Connection to {peer} is back"),
                CallProgress::Restarting => println!("The network changed; reconnecting…"),
            }
        }
    }
}

/// Prints the end of a call.
pub fn print_summary(out: &Out, summary: &CallSummary) {
    let t = &summary.timings;
    if out.is_json() {
        let mut line = json!({
            "event": "ended",
            "call_id": summary.call_id,
            "peer": summary.peer,
            "reason": summary.end.as_str(),
            "dial_to_ringing_ms": t.ringing.map(ms),
            "dial_to_connected_ms": t.connected.map(ms),
            "dial_to_first_audio_ms": t.first_audio.map(ms),
            "path": summary.path.as_ref().map(path_json),
        });
        if let (Some(stats), Some(obj)) = (&summary.media, line.as_object_mut()) {
            let m = &stats.media;
            obj.insert("duration_ms".into(), json!(ms(stats.duration)));
            obj.insert(
                "media".into(),
                json!({
                    "packets_sent": m.packets_sent,
                    "packets_received": m.packets_received,
                    "packets_lost": m.packets_lost,
                    "frames_concealed": m.frames_concealed,
                    "frames_fec": m.frames_fec,
                    "jitter_delay_ms": ms(m.jitter_delay),
                }),
            );
        }
        println!("{line}");
    } else {
        let mut text =
            format!("Call with {} ended: {}", Escaped(&summary.peer), summary.end.as_str());
        if let Some(stats) = &summary.media {
            let m = &stats.media;
            text.push_str(&format!(
                " after {:.1} s ({} packets sent, {} received, {} lost)",
                stats.duration.as_secs_f64(),
                m.packets_sent,
                m.packets_received,
                m.packets_lost
            ));
        }
        println!("{text}");
    }
}

/// Completes after `duration` seconds, or at Ctrl-C when there is none.
pub async fn hang_up_after(duration: Option<f64>) {
    match duration {
        Some(secs) => tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `peerline call USER`.
pub async fn call(
    client: &mut Client,
    out: &Out,
    to: &str,
    audio: Audio,
    duration: Option<f64>,
    options: CallOptions,
) -> anyhow::Result<()> {
    let mut progress = progress_printer(out, to, Identity::of(client)?);
    let (source, sink) = audio;
    let summary = peerline_call::place_call(
        client,
        to,
        source,
        sink,
        options,
        hang_up_after(duration),
        &mut progress,
    )
    .await?;
    print_summary(out, &summary);
    if summary.timings.connected.is_none() {
        anyhow::bail!("the call with {to} did not connect ({})", summary.end.as_str());
    }
    Ok(())
}

/// How `peerline online` treats incoming calls.
pub struct Answering<'a> {
    /// Answer without asking.
    pub auto: bool,
    /// `--play`.
    pub play: Option<&'a Path>,
    /// `--record`.
    pub record: Option<&'a Path>,
    /// Hang up each answered call after this many seconds.
    pub duration: Option<f64>,
    /// Answer through a TURN relay only.
    pub relay_only: bool,
}

/// An incoming call in `peerline online`: rings, asks (unless `--auto-answer`), answers and
/// runs the call to its end. Returns when the call is over.
pub async fn incoming(
    client: &mut Client,
    out: &Out,
    call: IncomingCall,
    answering: &Answering<'_>,
) -> anyhow::Result<()> {
    let identity = Identity::of(client)?;
    ring(client, &call).await?;
    if !out.is_json() {
        println!("Incoming call from {} ({})", Escaped(&call.from), Escaped(&call.display_name));
    } else {
        println!(
            "{}",
            json!({"event": "incoming_call", "call_id": call.call_id, "from": call.from})
        );
    }
    if !answering.auto && !ask_to_answer(client, &call).await? {
        decline(client, &call, false).await?;
        if !out.is_json() {
            println!("Declined.");
        }
        return Ok(());
    }
    let audio = match open_audio(answering.play, answering.record) {
        Ok(audio) => audio,
        Err(e) => {
            decline(client, &call, true).await?;
            return Err(e.context("cannot answer the call"));
        }
    };
    let peer = call.from.clone();
    let mut progress = progress_printer(out, &peer, identity);
    let (source, sink) = audio;
    let summary = peerline_call::answer_call(
        client,
        call,
        source,
        sink,
        CallOptions { relay_only: answering.relay_only, ..CallOptions::default() },
        hang_up_after(answering.duration),
        &mut progress,
    )
    .await?;
    print_summary(out, &summary);
    Ok(())
}

/// Asks on the terminal whether to answer, until the caller gives up.
async fn ask_to_answer(client: &mut Client, call: &IncomingCall) -> anyhow::Result<bool> {
    println!("Answer? [y/N] ");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = line.context("reading the answer from the terminal")?;
                return Ok(line.is_some_and(|l| l.trim().eq_ignore_ascii_case("y")));
            }
            event = client.next_event() => match event {
                Some(Event::CallEnded { call_id, reason }) if call_id == call.call_id => {
                    println!("The call ended before you answered: {}", reason.as_str());
                    return Ok(false);
                }
                Some(_) => {}
                None => anyhow::bail!("lost the connection to the supernode"),
            }
        }
    }
}
