//! Call-signaling exchanges without media, as the real client signals a call: the caller sends
//! `call_invite` with an SDP offer (no addresses) whose DTLS fingerprint it signs with its
//! device key (`call_signature_payload`), then trickles a candidate; the callee checks the
//! offer's signature as the real client does (`peerline_call_core::PeerClaim`), says
//! `call_ringing`, answers with a signed SDP answer, and once the caller's candidate reached it
//! trickles one of its own; the caller checks
//! the answer's signature, keeps the call up for `call_secs`, and hangs up; the callee sees
//! `call_ended` (`hung_up`).
//!
//! Callers and callees are fixed pairs, local users `2p` (caller) and `2p + 1` (callee), roster
//! neighbours and so accepted contacts, one exchange per pair at a time: a callee is never rung
//! by two callers at once, so every exchange can complete (`callee_busy` would be the load
//! generator's doing, not the supernode's).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ed25519_dalek::Signer;
use peerline_call_core::PeerClaim;
use peerline_wire::{CallEndReason, Event, Reply, Request, SdpRole, call_signature_payload};
use rand::Rng;
use tokio::sync::mpsc;

use super::shared::Shared;

/// How long the caller waits for `call_ringing` and `call_accepted`, and the callee for the
/// end of the call beyond its planned length.
const SIGNAL_WAIT: Duration = Duration::from_secs(20);

/// A `call_incoming` as the callee got it.
#[derive(Debug)]
pub(super) struct Offer {
    pub(super) call_id: String,
    pub(super) from: String,
    pub(super) device_id: i64,
    pub(super) device_key: String,
    pub(super) sdp: String,
    pub(super) signature: String,
}

/// A fresh DTLS fingerprint (`sha-256 AB:CD:…`), as a new certificate of a real call would have.
fn fingerprint(rng: &mut impl Rng) -> String {
    let bytes: [u8; 32] = rng.r#gen();
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha-256 {}", hex.join(":"))
}

/// An SDP offer or answer shaped as the Peerline client's (one Opus audio section, ICE
/// credentials, no addresses).
fn description(role: SdpRole, fingerprint: &str, rng: &mut impl Rng) -> String {
    let setup = match role {
        SdpRole::Offer => "actpass",
        SdpRole::Answer => "active",
    };
    let session: u64 = rng.gen_range(1..i64::MAX as u64);
    let ufrag = hex::encode(rng.r#gen::<[u8; 3]>());
    let pwd = hex::encode(rng.r#gen::<[u8; 12]>());
    format!(
        "v=0\r\no=- {session} 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         a=fingerprint:{fingerprint}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
         a=mid:0\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=ice-options:trickle\r\n\
         a=setup:{setup}\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    )
}

/// A host candidate on loopback, as trickled after the offer or answer.
fn candidate(rng: &mut impl Rng) -> String {
    let port: u16 = rng.gen_range(20_000..60_000);
    format!("candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host")
}

/// The description for `role` and its signature by local user `local`'s device key, for the
/// call `call_id` from `from` to `to`.
fn signed(
    shared: &Shared,
    local: usize,
    call_id: &str,
    role: SdpRole,
    (from, to): (&str, &str),
) -> Option<(String, String)> {
    let key = shared.keys.get(local)?;
    let mut rng = rand::thread_rng();
    let fingerprint = fingerprint(&mut rng);
    let sdp = description(role, &fingerprint, &mut rng);
    let payload = call_signature_payload(call_id, role, from, to, &fingerprint);
    Some((sdp, hex::encode(key.sign(&payload).to_bytes())))
}

/// The next event of this exchange, until `deadline`.
async fn next_event(
    events: &mut mpsc::UnboundedReceiver<Event>,
    deadline: tokio::time::Instant,
) -> Option<Event> {
    tokio::time::timeout_at(deadline, events.recv()).await.ok().flatten()
}

/// One exchange from pair `pair`'s caller to its callee; counts and times every step.
pub(super) async fn place(shared: &Shared, pair: usize) {
    let (caller, callee) = (2 * pair, 2 * pair + 1);
    let (me, them) = (shared.name(caller).to_owned(), shared.name(callee).to_owned());
    let call_id = hex::encode(rand::thread_rng().r#gen::<[u8; 16]>());
    let Some((sdp, fingerprint_signature)) =
        signed(shared, caller, &call_id, SdpRole::Offer, (&me, &them))
    else {
        return;
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    // Expected before the invite: its events may come before its answer.
    shared.expect_call(&call_id, caller, tx);
    shared.counters.calls_started.fetch_add(1, Ordering::Relaxed);
    let completed =
        exchange(shared, caller, &call_id, &them, sdp, fingerprint_signature, &mut events).await;
    shared.forget_call(&call_id, caller);
    if completed {
        shared.counters.calls_completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The caller's side of [`place`]; whether every step went as it should.
async fn exchange(
    shared: &Shared,
    caller: usize,
    call_id: &str,
    callee_name: &str,
    sdp: String,
    fingerprint_signature: String,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> bool {
    let me = shared.name(caller).to_owned();
    let invited = Instant::now();
    let invite = Request::CallInvite {
        call_id: call_id.to_owned(),
        to: callee_name.to_owned(),
        sdp,
        fingerprint_signature,
    };
    match shared.timed(caller, "call_invite", invite).await {
        Some(Reply::CallPlaced { .. }) => {}
        Some(other) => {
            shared.error("call_invite", "unexpected_reply", || format!("{other:?}"));
            return false;
        }
        None => return false,
    }
    let trickle = Request::CallCandidate {
        call_id: call_id.to_owned(),
        candidate: candidate(&mut rand::thread_rng()),
    };
    if shared.timed(caller, "call_candidate", trickle).await.is_none() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + SIGNAL_WAIT;
    let mut rang = false;
    let answer = loop {
        match next_event(events, deadline).await {
            Some(Event::CallRinging { .. }) => {
                if !rang {
                    rang = true;
                    shared.record("call_invite_to_ringing", invited.elapsed());
                }
            }
            Some(Event::CallAccepted {
                device_id, device_key, sdp, fingerprint_signature, ..
            }) => {
                shared.record("call_invite_to_answer", invited.elapsed());
                break PeerClaim {
                    peer: callee_name.to_owned(),
                    device_id,
                    device_key,
                    sdp,
                    signature: fingerprint_signature,
                };
            }
            Some(Event::CallEnded { reason, .. }) => {
                shared.error("call", &format!("ended_{}", reason_name(reason)), String::new);
                return false;
            }
            Some(_) => {}
            None => {
                let step = if rang { "no_answer_event" } else { "no_ringing_event" };
                shared.error("call", step, String::new);
                let _ = shared
                    .timed(
                        caller,
                        "call_hangup",
                        Request::CallHangup { call_id: call_id.to_owned() },
                    )
                    .await;
                return false;
            }
        }
    };
    let verified = answer.verified(call_id, SdpRole::Answer, &me).is_some();
    if !verified {
        shared.error("call", "bad_answer_signature", String::new);
    }
    if !rang {
        // The supernode sends `call_ringing` before `call_accepted` from the same device.
        shared.error("call", "answered_without_ringing", String::new);
    }
    tokio::time::sleep(Duration::from_secs_f64(shared.plan.call_secs.max(0.0))).await;
    let hangup = Request::CallHangup { call_id: call_id.to_owned() };
    let hung_up = matches!(shared.timed(caller, "call_hangup", hangup).await, Some(Reply::Done));
    verified && rang && hung_up
}

fn reason_name(reason: CallEndReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The callee's side: checks the offer, rings, answers, trickles a candidate and waits for the
/// caller's hang-up.
pub(super) async fn answer(
    shared: &Shared,
    local: usize,
    offer: Offer,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let answered = callee_steps(shared, local, &offer, &mut events).await;
    shared.forget_call(&offer.call_id, local);
    if answered {
        shared.counters.calls_answered.fetch_add(1, Ordering::Relaxed);
    }
}

async fn callee_steps(
    shared: &Shared,
    local: usize,
    offer: &Offer,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> bool {
    let me = shared.name(local).to_owned();
    let call_id = offer.call_id.clone();
    let claim = PeerClaim {
        peer: offer.from.clone(),
        device_id: offer.device_id,
        device_key: offer.device_key.clone(),
        sdp: offer.sdp.clone(),
        signature: offer.signature.clone(),
    };
    if claim.verified(&call_id, SdpRole::Offer, &me).is_none() {
        // The real client refuses a call whose offer is not signed by the caller's device.
        shared.error("call_incoming", "bad_offer_signature", String::new);
        let decline = Request::CallDecline { call_id, busy: false, reason: None };
        let _ = shared.timed(local, "call_decline", decline).await;
        return false;
    }
    let ringing = Request::CallRinging { call_id: call_id.clone() };
    if !matches!(shared.timed(local, "call_ringing", ringing).await, Some(Reply::Done)) {
        return false;
    }
    let Some((sdp, fingerprint_signature)) =
        signed(shared, local, &call_id, SdpRole::Answer, (&me, &offer.from))
    else {
        return false;
    };
    let accept = Request::CallAccept { call_id: call_id.clone(), sdp, fingerprint_signature };
    if !matches!(shared.timed(local, "call_accept", accept).await, Some(Reply::Done)) {
        return false;
    }
    // The callee trickles once the caller's candidate has come through: in a cluster, a
    // `call_accept` on the callee's supernode is answered before the caller's supernode has
    // confirmed it, and a candidate sent in between is refused `no_such_call` (the supernode
    // passes the caller's held candidates on once it has).
    let deadline = tokio::time::Instant::now() + SIGNAL_WAIT;
    loop {
        match next_event(events, deadline).await {
            Some(Event::CallCandidate { .. }) => break,
            Some(Event::CallEnded { reason, .. }) => {
                let why = format!("ended_{}", reason_name(reason));
                shared.error("call_incoming", &why, String::new);
                return false;
            }
            Some(_) => {}
            None => {
                shared.error("call_incoming", "no_candidate_event", String::new);
                return false;
            }
        }
    }
    let trickle = Request::CallCandidate {
        call_id: call_id.clone(),
        candidate: candidate(&mut rand::thread_rng()),
    };
    if shared.timed(local, "call_candidate", trickle).await.is_none() {
        return false;
    }
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs_f64(shared.plan.call_secs.max(0.0))
        + SIGNAL_WAIT;
    loop {
        match next_event(events, deadline).await {
            Some(Event::CallEnded { reason: CallEndReason::HungUp, .. }) => return true,
            Some(Event::CallEnded { reason, .. }) => {
                let why = format!("ended_{}", reason_name(reason));
                shared.error("call_incoming", &why, String::new);
                return false;
            }
            Some(_) => {}
            None => {
                shared.error("call_incoming", "no_hangup_event", String::new);
                return false;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_signed_offer_verifies_as_the_real_client_checks_it_and_carries_no_address() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let mut rng = rand::thread_rng();
        let fp = fingerprint(&mut rng);
        let sdp = description(SdpRole::Offer, &fp, &mut rng);
        assert!(!sdp.contains("a=candidate") && sdp.contains("c=IN IP4 0.0.0.0"));
        let call_id = "0123456789abcdef0123456789abcdef";
        let payload = call_signature_payload(call_id, SdpRole::Offer, "alice", "bob", &fp);
        let claim = PeerClaim {
            peer: "alice".into(),
            device_id: 1,
            device_key: hex::encode(key.verifying_key().to_bytes()),
            sdp,
            signature: hex::encode(key.sign(&payload).to_bytes()),
        };
        assert!(claim.verified(call_id, SdpRole::Offer, "bob").is_some());
        assert!(claim.verified(call_id, SdpRole::Answer, "bob").is_none());
    }
}
