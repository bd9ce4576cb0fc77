//! The call commands: `peerline call USER`, answering in `peerline online`, and the audio each
//! call uses (WAV files, or the sound card when there is one).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use peerline_call::media::{AudioError, EndReason as MediaEnd};
use peerline_call::media::{AudioSink, AudioSource, WavSink, WavSource};
use peerline_call::{
    CallEnd, CallOptions, CallPath, CallProgress, CallSummary, IncomingCall, KeyCheck, decline,
    refuse, relay_configured, ring,
};
use peerline_client::Client;
use peerline_client::wire::{CallEndReason, Event};
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

/// What `peerline online` says at start on a machine where a call could not be answered: no
/// microphone or speaker, and no `--play`/`--record` in their place.
pub const NO_AUDIO_WARNING: &str = "No microphone or speaker found: calls cannot be answered \
     here (use --play/--record to use WAV files)";

/// Whether answering needs a sound device that this machine lacks.
fn sound_devices_missing(play: Option<&Path>, record: Option<&Path>) -> bool {
    (play.is_none() || record.is_none()) && !peerline_call::media::devices_available()
}

/// At the start of `peerline online`: warns on stderr (in both output modes; stdout stays for
/// events) when incoming calls could not be answered for want of a sound device.
pub fn warn_if_no_audio(play: Option<&Path>, record: Option<&Path>) {
    if sound_devices_missing(play, record) {
        eprintln!("Warning: {NO_AUDIO_WARNING}");
    }
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
/// number. `calling`: this side dialed (the answer came from `peer`), else it answered.
pub fn progress_printer(
    out: &Out,
    peer: &str,
    identity: Identity,
    calling: bool,
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
                CallProgress::Dialing { devices, .. } => match devices {
                    1 => println!("Calling {peer} (1 device ringing)…"),
                    n => println!("Calling {peer} ({n} devices ringing)…"),
                },
                CallProgress::Ringing { after } => println!("Ringing ({} ms)", ms(*after)),
                CallProgress::Answered { device_id, key, .. } => println!(
                    "{}{}",
                    if calling {
                        format!("Answered by {peer}'s device {device_id}")
                    } else {
                        format!("You answered; {peer} calls from device {device_id}")
                    },
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
        let mut text = format!(
            "Call with {} ended: {}",
            Escaped(&summary.peer),
            end_sentence(&summary.end, &summary.peer)
        );
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

/// How a call ended, as a sentence for people (JSON lines carry the protocol word instead).
pub fn end_sentence(end: &CallEnd, peer: &str) -> String {
    let peer = Escaped(peer);
    match end {
        CallEnd::HungUpHere => "you hung up".to_owned(),
        CallEnd::Remote(reason) => match reason {
            CallEndReason::Declined => format!("{peer} declined the call"),
            CallEndReason::Busy => format!("{peer} is busy in another call"),
            CallEndReason::Cancelled => format!("{peer} gave up before it was answered"),
            CallEndReason::NoAnswer => "nobody answered".to_owned(),
            CallEndReason::AnsweredElsewhere => "answered on another of your devices".to_owned(),
            CallEndReason::HungUp => format!("{peer} hung up"),
            CallEndReason::PeerGone => format!("{peer}'s connection to the network dropped"),
            CallEndReason::Unavailable => format!("{peer} is not online"),
            CallEndReason::NoAudioDevice => {
                format!("{peer} cannot take calls on this device: no audio device")
            }
            CallEndReason::NoRelay => format!(
                "{peer} accepts calls only through a relay, and this network has none configured"
            ),
            CallEndReason::Unknown => "the network ended it, for a reason this version does \
                                       not know"
                .to_owned(),
        },
        CallEnd::Media(MediaEnd::Stopped) => "the call's audio stopped".to_owned(),
        CallEnd::Media(MediaEnd::PeerClosed) => format!("{peer} left the call"),
        CallEnd::Media(MediaEnd::ConnectTimeout) => {
            format!("no network path between you and {peer} was found")
        }
        CallEnd::Media(MediaEnd::PathLost) => format!("the connection to {peer} was lost"),
        CallEnd::SupernodeLost => {
            "the connection to the network was lost and could not be restored".to_owned()
        }
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
    let mut progress = progress_printer(out, to, Identity::of(client)?, true);
    let (source, sink) = audio;
    let dialed_at = crate::call_log::now_ms();
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
    crate::call_log::report(client, &summary, true, dialed_at).await;
    let connected = summary.timings.connected.is_some();
    // A call that never connected ends in the error below, which says why; the sentence would
    // only say it twice. JSON lines always get their `ended` line.
    if connected || out.is_json() {
        print_summary(out, &summary);
    }
    if !connected {
        anyhow::bail!(
            "the call with {} did not connect: {}",
            Escaped(to),
            end_sentence(&summary.end, to)
        );
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

/// An incoming call in `peerline online`: a device that cannot take it (no sound device, or
/// relay-only on a network without a relay) refuses it at once, saying why on both sides;
/// otherwise it rings, asks (unless `--auto-answer`), answers and runs the call to its end.
/// Returns when the call is over.
pub async fn incoming(
    client: &mut Client,
    out: &Out,
    call: IncomingCall,
    answering: &Answering<'_>,
) -> anyhow::Result<()> {
    let identity = Identity::of(client)?;
    let rang_at = crate::call_log::now_ms();
    if out.is_json() {
        println!(
            "{}",
            json!({"event": "incoming_call", "call_id": call.call_id, "from": call.from})
        );
    } else {
        println!("Incoming call from {} ({})", Escaped(&call.from), Escaped(&call.display_name));
    }
    // Checked before ringing: a call this device cannot carry must not ring, nor be answered
    // and then fail (the caller would hear "busy" or 30 s of silence).
    // A failed check (the supernode's rate limit, say) lets the call go on: gathering decides.
    if answering.relay_only && matches!(relay_configured(client).await, Ok(false)) {
        return refused(client, out, &call, CallEndReason::NoRelay).await;
    }
    if sound_devices_missing(answering.play, answering.record) {
        return refused(client, out, &call, CallEndReason::NoAudioDevice).await;
    }
    ring(client, &call).await?;
    if !answering.auto {
        match ask_to_answer(client, out, &call).await? {
            Some(true) => {}
            Some(false) => {
                decline(client, &call, false).await?;
                print_declined(out, &call, CallEndReason::Declined);
                return Ok(());
            }
            // The caller gave up first; that end was reported.
            None => return Ok(()),
        }
    }
    let audio = match open_audio(answering.play, answering.record) {
        Ok(audio) => audio,
        Err(e)
            if e.downcast_ref::<AudioError>()
                .is_some_and(|e| matches!(e, AudioError::NoDevice { .. })) =>
        {
            // The probe said yes, opening said no (a device busy in another program).
            return refused(client, out, &call, CallEndReason::NoAudioDevice).await;
        }
        Err(e) => {
            decline(client, &call, true).await?;
            return Err(e.context("cannot answer the call"));
        }
    };
    let peer = call.from.clone();
    let mut progress = progress_printer(out, &peer, identity, false);
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
    crate::call_log::report(client, &summary, false, rang_at).await;
    print_summary(out, &summary);
    Ok(())
}

/// Refuses `call` for `reason` (only this device stops ringing; the caller hears the reason)
/// and says so.
async fn refused(
    client: &Client,
    out: &Out,
    call: &IncomingCall,
    reason: CallEndReason,
) -> anyhow::Result<()> {
    refuse(client, call, reason).await?;
    print_declined(out, call, reason);
    Ok(())
}

/// Reports a declined call: a `declined` JSON line with the protocol reason (`declined` when the
/// user said no, `no_audio_device` or `no_relay` when this device could not take it), or a
/// sentence.
fn print_declined(out: &Out, call: &IncomingCall, reason: CallEndReason) {
    if out.is_json() {
        let line = json!({
            "event": "declined",
            "call_id": call.call_id,
            "from": call.from,
            "reason": reason.as_str(),
        });
        println!("{line}");
        return;
    }
    let from = Escaped(&call.from);
    match reason {
        CallEndReason::NoAudioDevice => println!(
            "Declined the call from {from}: this device has no microphone or speaker (use \
             --play/--record to answer with WAV files). {from} was told why."
        ),
        CallEndReason::NoRelay => println!(
            "Declined the call from {from}: this device takes calls only through a relay, and \
             this network has no relay configured. {from} was told why."
        ),
        _ => println!("Declined the call from {from}."),
    }
}

/// Asks whether to answer, until the caller gives up. The question goes to stdout for people;
/// with `--json` it goes to stderr, so stdout carries JSON lines only. The answer is read from
/// stdin either way (no terminal, no answer: declined). `None`: the call ended first.
async fn ask_to_answer(
    client: &mut Client,
    out: &Out,
    call: &IncomingCall,
) -> anyhow::Result<Option<bool>> {
    if out.is_json() {
        eprintln!("Answer the call from {}? [y/N] ", Escaped(&call.from));
    } else {
        println!("Answer? [y/N] ");
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = line.context("reading the answer from the terminal")?;
                return Ok(Some(line.is_some_and(|l| l.trim().eq_ignore_ascii_case("y"))));
            }
            event = client.next_event() => match event {
                Some(Event::CallEnded { call_id, reason }) if call_id == call.call_id => {
                    if out.is_json() {
                        let line = json!({
                            "event": "ended",
                            "call_id": call.call_id,
                            "peer": call.from,
                            "reason": reason.as_str(),
                        });
                        println!("{line}");
                    } else {
                        println!(
                            "The call ended before you answered: {}",
                            end_sentence(&CallEnd::Remote(reason), &call.from)
                        );
                    }
                    return Ok(None);
                }
                Some(_) => {}
                None => anyhow::bail!("lost the connection to the supernode"),
            }
        }
    }
}
