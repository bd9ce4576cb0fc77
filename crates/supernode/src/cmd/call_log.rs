//! The call log: `call_report` (a device adds a call as it saw it) and `call_log` (any device of
//! the account reads it back). The supernode itself records the calls that rang a user
//! unanswered (see `state.rs`), since no device of the callee may have been there to report.
//!
//! A report only ever writes to the reporter's own log, so a lying client fools only itself;
//! the fields are still bounded, so it cannot fill the database with junk.

use peerline_store::{CallRecord, NewCallRecord};
use peerline_wire::{CallLogEntry, CallReport, ErrorBody, ErrorCode, Reply, validate};

use super::budget::{self, PAGE_ROWS};
use crate::session::{Session, db};
use crate::state::now_ms;

/// Longest call id, reason and path a report may carry.
const MAX_CALL_ID: usize = 64;
const MAX_REASON: usize = 32;
/// Paths a device may report.
const PATHS: &[&str] = &["direct", "relay", "unknown"];

fn to_wire(r: CallRecord) -> CallLogEntry {
    CallLogEntry {
        id: r.id,
        call_id: r.call_id,
        peer: r.peer,
        outgoing: r.outgoing,
        started_at: r.started_at,
        answered_at: r.answered_at,
        ended_at: r.ended_at,
        reason: r.end_reason,
        path: r.path,
    }
}

fn invalid(why: &str) -> ErrorBody {
    ErrorBody::with_message(ErrorCode::InvalidArgument, why)
}

/// Checks a report's fields; `now` bounds its times (a minute of clock skew is allowed).
fn check(report: &CallReport, now: i64) -> Result<(), ErrorBody> {
    let id_ok = !report.call_id.is_empty()
        && report.call_id.len() <= MAX_CALL_ID
        && report.call_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err(invalid("call_id must be 1-64 of a-z A-Z 0-9 - _"));
    }
    let reason_ok = (1..=MAX_REASON).contains(&report.reason.len())
        && report.reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if !reason_ok {
        return Err(invalid("reason must be 1-32 of a-z _"));
    }
    if report.path.as_deref().is_some_and(|p| !PATHS.contains(&p)) {
        return Err(invalid("path must be direct, relay or unknown"));
    }
    let answered_ok =
        report.answered_at.is_none_or(|a| report.started_at <= a && a <= report.ended_at);
    if report.started_at <= 0
        || report.ended_at < report.started_at
        || report.ended_at > now + 60_000
        || !answered_ok
    {
        return Err(invalid("times must satisfy 0 < started_at <= answered_at <= ended_at <= now"));
    }
    Ok(())
}

impl Session {
    pub(crate) async fn call_report(&mut self, report: CallReport) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        check(&report, now_ms())?;
        let name = validate::username(&report.peer).map_err(|_| ErrorCode::NoSuchUser)?;
        let store = self.shared.store.clone();
        let peer = db(store.account_by_username(&name).await)?.ok_or(ErrorCode::NoSuchUser)?;
        let record = NewCallRecord {
            call_id: report.call_id.clone(),
            owner: me.user_id,
            peer: peer.id,
            outgoing: report.outgoing,
            started_at: report.started_at,
            answered_at: report.answered_at,
            ended_at: report.ended_at,
            end_reason: report.reason,
            path: report.path.clone(),
        };
        db(store.record_call(record).await)?;
        // A record the supernode wrote first (a call that rang here unanswered) gets the path.
        if let Some(path) = &report.path {
            db(store.set_call_path(me.user_id, &report.call_id, path).await)?;
        }
        Ok(Reply::Done)
    }

    pub(crate) async fn call_log(
        &mut self,
        missed: bool,
        before: Option<i64>,
        raw_limit: Option<u32>,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let n = match raw_limit.unwrap_or(50) {
            n @ 1..=1000 => n,
            _ => return Err(invalid("limit must be 1-1000")),
        };
        let read = n.min(PAGE_ROWS);
        let rows = db(self.shared.store.call_log(me.user_id, missed, before, read).await)?;
        let stopped_early = read < n && rows.len() == read as usize;
        let (calls, cut) = budget::fit_first(rows.into_iter().map(to_wire).collect());
        Ok(Reply::CallLog { calls, more: cut || stopped_early })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> CallReport {
        CallReport {
            call_id: "c-1".into(),
            peer: "bob".into(),
            outgoing: true,
            started_at: 1_000,
            answered_at: Some(2_000),
            ended_at: 3_000,
            reason: "hung_up".into(),
            path: Some("direct".into()),
        }
    }

    #[test]
    fn reports_are_bounded() {
        assert!(check(&report(), 10_000).is_ok());
        let bad = [
            CallReport { call_id: "x".repeat(65), ..report() },
            CallReport { call_id: "a/b".into(), ..report() },
            CallReport { reason: "Hung up".into(), ..report() },
            CallReport { reason: "a".repeat(33), ..report() },
            CallReport { path: Some("through the supernode".into()), ..report() },
            CallReport { ended_at: 500, ..report() },
            CallReport { answered_at: Some(5_000), ..report() },
            CallReport { ended_at: 10_000 + 61_000, answered_at: None, ..report() },
            CallReport { started_at: 0, answered_at: None, ..report() },
        ];
        for r in bad {
            assert!(check(&r, 10_000).is_err(), "{r:?}");
        }
    }
}
