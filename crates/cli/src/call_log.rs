//! `peerline calls`: the call history kept by the supernode, so that every device of the account
//! lists the same calls; and the report each device sends when one of its calls ended.

use std::time::{SystemTime, UNIX_EPOCH};

use peerline_call::CallSummary;
use peerline_client::Client;
use peerline_client::wire::{CallLogEntry, CallReport, Reply, Request};
use serde_json::json;
use tracing::debug;

use crate::output::{Out, when};
use crate::sanitize::Escaped;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a report says of a call that ended: `started_at` when it was placed (or rang here).
/// The answer time is when the media came up, the closest this side knows.
pub fn report_of(summary: &CallSummary, outgoing: bool, started_at: i64) -> CallReport {
    let ended_at = now_ms().max(started_at);
    let answered_at = summary.timings.connected.map(|d| {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        started_at.saturating_add(ms).min(ended_at)
    });
    let path = summary.path.as_ref().map(|p| if p.is_direct() { "direct" } else { "relay" });
    CallReport {
        call_id: summary.call_id.clone(),
        peer: summary.peer.clone(),
        outgoing,
        started_at,
        answered_at,
        ended_at,
        reason: summary.end.as_str().to_owned(),
        path: path.map(str::to_owned),
    }
}

/// Adds the call to the account's call log on the supernode. A failure costs only the log entry,
/// never the call: it is logged, not returned.
pub async fn report(client: &Client, summary: &CallSummary, outgoing: bool, started_at: i64) {
    let report = report_of(summary, outgoing, started_at);
    if let Err(e) = client.done(Request::CallReport(report)).await {
        debug!(error = %e, "the call could not be added to the call log");
    }
}

/// Prints the call log: newest first, `limit` at most, older than `before` if given.
pub async fn list(
    client: &Client,
    out: &Out,
    missed: bool,
    limit: u32,
    before: Option<i64>,
) -> anyhow::Result<()> {
    let reply = client.request(Request::CallLog { missed, before, limit: Some(limit) }).await?;
    let Reply::CallLog { calls, more } = reply else {
        anyhow::bail!("the supernode answered call_log with something else: {reply:?}");
    };
    if out.is_json() {
        println!("{}", json!({"calls": calls, "more": more}));
        return Ok(());
    }
    if calls.is_empty() {
        println!("{}", if missed { "No missed calls." } else { "No calls yet." });
    }
    for call in &calls {
        println!("{}", line(call));
    }
    if let (true, Some(last)) = (more, calls.last()) {
        println!("More: peerline calls --before {}", last.id);
    }
    Ok(())
}

/// One call as a line: when, direction and peer, how long, how it ended, which path.
fn line(call: &CallLogEntry) -> String {
    let peer = Escaped(&call.peer);
    let who = match (call.outgoing, call.answered_at.is_some()) {
        (true, _) => format!("to {peer}"),
        (false, true) => format!("from {peer}"),
        (false, false) => format!("missed, from {peer}"),
    };
    let talked = call.answered_at.map(|a| {
        let secs = (call.ended_at - a).max(0) / 1000;
        format!(", {}:{:02}", secs / 60, secs % 60)
    });
    let path = match call.path.as_deref() {
        Some("direct") => ", direct",
        Some("relay") => ", through a relay",
        _ => "",
    };
    format!(
        "#{} {}  {who}{}{path} — {}",
        call.id,
        when(call.started_at),
        talked.unwrap_or_default(),
        reason_words(&call.reason),
    )
}

/// A call log reason in words.
fn reason_words(reason: &str) -> &str {
    match reason {
        "hung_up_here" => "you hung up",
        "hung_up" => "they hung up",
        "missed" => "not answered",
        "declined" => "declined",
        "busy" => "busy",
        "cancelled" => "cancelled",
        "no_answer" => "no answer",
        "unavailable" => "not online",
        "answered_elsewhere" => "answered on another device",
        "no_audio_device" => "no audio device",
        "no_relay" => "no relay available",
        "no_media_path" => "no media path",
        "media_path_lost" | "peer_closed_media" => "connection lost",
        "peer_gone" | "supernode_lost" => "connection lost",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        outgoing: bool,
        answered: Option<i64>,
        reason: &str,
        path: Option<&str>,
    ) -> CallLogEntry {
        CallLogEntry {
            id: 7,
            call_id: "c".into(),
            peer: "bob".into(),
            outgoing,
            started_at: 1_000_000,
            answered_at: answered,
            ended_at: 1_065_000,
            reason: reason.into(),
            path: path.map(str::to_owned),
        }
    }

    #[test]
    fn lines_say_direction_duration_end_and_path_in_words() {
        let l = line(&entry(true, Some(1_005_000), "hung_up_here", Some("direct")));
        assert!(l.contains("to bob, 1:00, direct — you hung up"), "{l}");
        let l = line(&entry(false, None, "missed", None));
        assert!(l.contains("missed, from bob — not answered"), "{l}");
        let l = line(&entry(false, Some(1_000_500), "hung_up", Some("relay")));
        assert!(l.contains("from bob, 1:04, through a relay — they hung up"), "{l}");
    }
}
