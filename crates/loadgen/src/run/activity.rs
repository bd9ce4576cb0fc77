//! The background activity of a worker's users during the hold, at fixed total rates: pings
//! (every user every `heartbeat` seconds), messages to contacts, status changes, directory
//! searches and call exchanges; and each user's reading of its pushed events (messages counted
//! and acknowledged, presence counted, call events passed to their exchange).
//!
//! Activity is open-loop: a ticker starts each request on time in its own task, whether or not
//! earlier ones were answered, so a slow supernode shows up as latency, not as a lower rate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peerline_wire::{Event, Reply, Request, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};

use super::shared::Shared;
use super::signaling;

/// The statuses users switch between (invisible is left out: it hides them from their
/// contacts, which a background of ordinary users rarely does).
pub(super) const STATUSES: [Status; 3] = [Status::Online, Status::Away, Status::Busy];
/// Work in flight at most, beyond which ticks are skipped (counted as `overloaded`): a bound
/// on this process's memory when the supernode stops answering.
const MAX_INFLIGHT: usize = 100_000;
/// Random picks before a tick gives up finding a user that is online (or a free call pair).
const PICKS: usize = 8;
/// What every message of a run starts with (then the run id, worker, sequence, send time).
const MESSAGE_TAG: &str = "peerline-loadgen";

/// Milliseconds since the Unix epoch: the send time carried in a message, so that the
/// receiving worker (another process on this machine, same clock) can time its delivery.
fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Calls `tick` `rate` times a second (as evenly as the timer allows: ticks that are due are
/// run together after a late wake-up) until `stop` turns true.
pub(super) async fn ticker(
    rate: f64,
    mut stop: watch::Receiver<bool>,
    mut tick: impl FnMut(&mut StdRng),
) {
    if !(rate.is_finite() && rate > 0.0) {
        return;
    }
    let mut rng = StdRng::from_entropy();
    let start = tokio::time::Instant::now();
    let mut done: u64 = 0;
    loop {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while done < due {
            tick(&mut rng);
            done += 1;
        }
        let next = start + Duration::from_secs_f64((done + 1) as f64 / rate);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
    }
}

/// Starts `work` in its own task, counted in flight, unless too much is in flight already.
fn spawn_counted<F>(shared: &Arc<Shared>, what: &str, work: impl FnOnce(Arc<Shared>) -> F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if shared.inflight.len() >= MAX_INFLIGHT {
        shared.skip(&format!("{what}:overloaded"));
        return;
    }
    // Counted before the task starts, so that `quiesce` never sees it missing.
    let guard = shared.inflight.enter();
    let future = work(shared.clone());
    tokio::spawn(async move {
        future.await;
        drop(guard);
    });
}

/// A random local user that is online now, or `None` after a few tries.
fn pick_online(shared: &Shared, rng: &mut StdRng) -> Option<usize> {
    let count = shared.plan.count;
    if count == 0 {
        return None;
    }
    (0..PICKS).map(|_| rng.gen_range(0..count)).find(|&u| shared.is_online(u))
}

/// Starts every ticker of the hold; they end when `stop` turns true.
pub(super) fn start(shared: &Arc<Shared>, stop: &watch::Receiver<bool>) {
    let rates = shared.plan.rates;
    let count = shared.plan.count;
    // Heartbeats: user after user, so each pings once per `heartbeat` seconds.
    let heartbeat_rate = count as f64 / shared.plan.heartbeat_secs.max(0.001);
    let mut next_user = 0;
    let s = shared.clone();
    tokio::spawn(ticker(heartbeat_rate, stop.clone(), move |_| {
        let user = next_user;
        next_user = (next_user + 1) % count.max(1);
        if !s.is_online(user) {
            s.skip("ping:offline");
            return;
        }
        spawn_counted(&s, "ping", |s| async move {
            if let Some(Reply::Pong) = s.timed(user, "ping", Request::Ping).await {
                s.counters.pings.fetch_add(1, Ordering::Relaxed);
            }
        });
    }));
    let s = shared.clone();
    tokio::spawn(ticker(rates.message, stop.clone(), move |rng| send_message(&s, rng)));
    let s = shared.clone();
    tokio::spawn(ticker(rates.presence, stop.clone(), move |rng| change_status(&s, rng)));
    let s = shared.clone();
    tokio::spawn(ticker(rates.search, stop.clone(), move |rng| search(&s, rng)));
    let s = shared.clone();
    tokio::spawn(ticker(rates.call, stop.clone(), move |rng| call(&s, rng)));
}

fn send_message(shared: &Arc<Shared>, rng: &mut StdRng) {
    let Some(from) = pick_online(shared, rng) else {
        return shared.skip("send_message:offline");
    };
    let contacts = shared.contacts_in_run(shared.plan.first + from);
    if contacts.is_empty() {
        return shared.skip("send_message:no_contact");
    }
    let to = contacts.get(rng.gen_range(0..contacts.len())).copied();
    let Some(to) = to.and_then(|to| shared.names.get(to).cloned()) else { return };
    let seq = shared.counters.message_seq.fetch_add(1, Ordering::Relaxed);
    let text =
        format!("{MESSAGE_TAG} {} {} {seq} {}", shared.plan.run_id, shared.plan.worker, now_ms());
    spawn_counted(shared, "send_message", |s| async move {
        let request = Request::SendMessage { to, text };
        if let Some(Reply::MessageSent { .. }) = s.timed(from, "send_message", request).await {
            s.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
        }
    });
}

fn change_status(shared: &Arc<Shared>, rng: &mut StdRng) {
    let Some(user) = pick_online(shared, rng) else {
        return shared.skip("set_status:offline");
    };
    let Some(current) = shared.status.get(user) else { return };
    // Another status than the current one, so that every change is one contacts see.
    let now = current.load(Ordering::Relaxed) as usize % STATUSES.len();
    let next = (now + rng.gen_range(1..STATUSES.len())) % STATUSES.len();
    current.store(next as u8, Ordering::Relaxed);
    let Some(&status) = STATUSES.get(next) else { return };
    spawn_counted(shared, "set_status", |s| async move {
        if let Some(Reply::Done) = s.timed(user, "set_status", Request::SetStatus { status }).await
        {
            s.counters.presence_changes.fetch_add(1, Ordering::Relaxed);
        }
    });
}

fn search(shared: &Arc<Shared>, rng: &mut StdRng) {
    let Some(user) = pick_online(shared, rng) else {
        return shared.skip("search:offline");
    };
    // Somebody of the run, by full username (a prefix search that finds them).
    let Some(query) = shared.names.get(rng.gen_range(0..shared.names.len().max(1))).cloned() else {
        return;
    };
    spawn_counted(shared, "search", |s| async move {
        if let Some(Reply::SearchResults { .. }) =
            s.timed(user, "search", Request::Search { query }).await
        {
            s.counters.searches.fetch_add(1, Ordering::Relaxed);
        }
    });
}

fn call(shared: &Arc<Shared>, rng: &mut StdRng) {
    let pairs = shared.plan.count / 2;
    if pairs == 0 {
        return shared.skip("call:no_pair");
    }
    let free = (0..PICKS).map(|_| rng.gen_range(0..pairs)).find(|&p| {
        shared.is_online(2 * p)
            && shared.is_online(2 * p + 1)
            && shared.pair_busy.get(p).is_some_and(|b| !b.swap(true, Ordering::AcqRel))
    });
    let Some(pair) = free else {
        return shared.skip("call:no_free_pair");
    };
    spawn_counted(shared, "call", |s| async move {
        signaling::place(&s, pair).await;
        if let Some(busy) = s.pair_busy.get(pair) {
            busy.store(false, Ordering::Release);
        }
    });
}

/// A message of this run: `(worker, sequence, sent at ms)`; `None` for anything else.
fn parse_message(text: &str, run_id: &str) -> Option<(u64, u64, u64)> {
    let mut words = text.split(' ');
    if words.next()? != MESSAGE_TAG || words.next()? != run_id {
        return None;
    }
    let mut number = || words.next()?.parse::<u64>().ok();
    Some((number()?, number()?, number()?))
}

/// The name of an event's type, for counting.
fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Presence { .. } => "presence",
        Event::ContactRequest { .. } => "contact_request",
        Event::ContactAccepted { .. } => "contact_accepted",
        Event::ContactRemoved { .. } => "contact_removed",
        Event::ContactDeclined { .. } => "contact_declined",
        Event::Message { .. } => "message",
        Event::Receipt { .. } => "receipt",
        Event::SessionEnded { .. } => "session_ended",
        Event::CallIncoming { .. } => "call_incoming",
        Event::CallRinging { .. } => "call_ringing",
        Event::CallAccepted { .. } => "call_accepted",
        Event::CallCandidate { .. } => "call_candidate",
        Event::CallRestart { .. } => "call_restart",
        Event::CallEnded { .. } => "call_ended",
        Event::MissedCall { .. } => "missed_call",
    }
}

/// Reads local user `local`'s pushed events until its client stops.
pub(super) async fn read_events(
    shared: Arc<Shared>,
    local: usize,
    mut events: mpsc::Receiver<Event>,
) {
    while let Some(event) = events.recv().await {
        *shared.tallies().events.entry(event_name(&event).to_owned()).or_default() += 1;
        match event {
            Event::Message { message } => {
                if message.to != shared.name(local) {
                    continue;
                }
                match parse_message(&message.text, &shared.plan.run_id) {
                    Some((worker, seq, sent_ms)) => {
                        let first = shared.tallies().delivered.insert((worker, seq));
                        if first {
                            shared.counters.messages_delivered.fetch_add(1, Ordering::Relaxed);
                            let took = Duration::from_millis(now_ms().saturating_sub(sent_ms));
                            shared.record("message_delivery", took);
                        } else {
                            shared.counters.messages_duplicated.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        shared.counters.messages_stale.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Acknowledged as the real client does, so nothing waits in the mailbox.
                let ids = vec![message.id];
                spawn_counted(&shared, "ack_delivered", |s| async move {
                    let _ = s.timed(local, "ack_delivered", Request::AckDelivered { ids }).await;
                });
            }
            Event::Presence { .. } if shared.holding.load(Ordering::Relaxed) => {
                shared.counters.presence_events.fetch_add(1, Ordering::Relaxed);
            }
            Event::CallIncoming {
                call_id,
                from,
                device_id,
                device_key,
                sdp,
                fingerprint_signature,
                ..
            } => {
                // Registered before the next event is read, so that none of this call's
                // events can pass its exchange by.
                let (tx, rx) = mpsc::unbounded_channel();
                shared.expect_call(&call_id, local, tx);
                let offer = signaling::Offer {
                    call_id,
                    from,
                    device_id,
                    device_key,
                    sdp,
                    signature: fingerprint_signature,
                };
                spawn_counted(&shared, "call_answer", |s| async move {
                    signaling::answer(&s, local, offer, rx).await;
                });
            }
            Event::CallRinging { ref call_id }
            | Event::CallAccepted { ref call_id, .. }
            | Event::CallCandidate { ref call_id, .. }
            | Event::CallEnded { ref call_id, .. } => {
                let call_id = call_id.clone();
                shared.route_call_event(&call_id, local, event);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_this_runs_messages_are_parsed() {
        let text = format!("{MESSAGE_TAG} abc123 1 42 1700000000000");
        assert_eq!(parse_message(&text, "abc123"), Some((1, 42, 1_700_000_000_000)));
        assert_eq!(parse_message(&text, "other"), None);
        assert_eq!(parse_message("hello there", "abc123"), None);
        assert_eq!(parse_message(&format!("{MESSAGE_TAG} abc123 1 x 5"), "abc123"), None);
    }

    #[tokio::test]
    async fn a_ticker_without_a_rate_ends_at_once_and_one_with_a_rate_ends_when_stopped() {
        let (stop_tx, stop) = watch::channel(false);
        ticker(0.0, stop.clone(), |_| panic!("no tick without a rate")).await;
        ticker(f64::NAN, stop.clone(), |_| panic!("no tick without a rate")).await;
        let task = tokio::spawn(ticker(1000.0, stop, |_| {}));
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
