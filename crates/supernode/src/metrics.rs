//! Metric names, in one place so that dashboards and docs can rely on them, and [`FAMILIES`]:
//! each family's type and help text, registered at start so that every family has `# HELP` and
//! `# TYPE` and every counter is scraped (at 0) before its first event. docs/operations.md lists
//! the same families (a test keeps them in sync).

/// Gauge: client connections open now.
pub const CONNECTIONS: &str = "peerline_connections";
/// Gauge: users with at least one logged-in device.
pub const ONLINE_USERS: &str = "peerline_online_users";
/// Counter: connections accepted. (Not `peerline_connections_total`: that would share its stem
/// with the gauge [`CONNECTIONS`].)
pub const CONNECTIONS_TOTAL: &str = "peerline_connections_accepted_total";
/// Counter: connections refused because of `max_connections`.
pub const CONNECTIONS_REFUSED: &str = "peerline_connections_refused_total";
/// Counter, label `method` (password/token) and `result` (ok/fail/throttled): login attempts.
pub const LOGINS: &str = "peerline_logins_total";
/// Counter: accounts registered.
pub const REGISTRATIONS: &str = "peerline_registrations_total";
/// Counter: instant messages stored.
pub const MESSAGES: &str = "peerline_messages_stored_total";
/// Counter, label `code`: requests answered with an error.
pub const REQUEST_ERRORS: &str = "peerline_request_errors_total";
/// Counter: frames that could not be decoded.
pub const BAD_FRAMES: &str = "peerline_bad_frames_total";
/// Counter: connections dropped because they did not read their frames.
pub const SLOW_READER_DISCONNECTS: &str = "peerline_slow_reader_disconnects_total";
/// Counter: requests handled.
pub const REQUESTS: &str = "peerline_requests_total";
/// Counter, label `result` (ringing/busy/unavailable/refused): calls placed.
pub const CALL_INVITES: &str = "peerline_call_invites_total";
/// Counter: calls answered.
pub const CALLS_ANSWERED: &str = "peerline_calls_answered_total";
/// Counter: missed calls recorded.
pub const MISSED_CALLS: &str = "peerline_missed_calls_total";
/// Gauge: calls ringing or answered now.
pub const CALLS: &str = "peerline_calls";
/// Counter: contact changes decided again because a concurrent change of the same pair was
/// stored first.
pub const CONTACT_CONFLICTS: &str = "peerline_contact_conflicts_total";
/// Counter: messages for other supernodes dropped because the bus queue was full.
pub const BUS_DROPPED: &str = "peerline_bus_dropped_total";
/// Histogram: seconds to hand a message to the bus.
pub const BUS_PUBLISH_SECONDS: &str = "peerline_bus_publish_seconds";
/// Histogram: seconds from another supernode publishing a message to this one taking it into
/// its hub (the bus, the receive queue and decoding; across machines, plus their clock
/// difference).
pub const BUS_DELIVER_SECONDS: &str = "peerline_bus_deliver_seconds";
/// Counter: messages received from other supernodes.
pub const BUS_RECEIVED: &str = "peerline_bus_received_total";
/// Counter: messages from other supernodes that could not be decoded.
pub const BUS_BAD_MESSAGES: &str = "peerline_bus_bad_messages_total";
/// Gauge: users this supernode watches on the bus (its share of the network's directory).
pub const DIRECTORY_USERS: &str = "peerline_directory_users";
/// Gauge: other supernodes heard on the bus and not down.
pub const LIVE_NODES: &str = "peerline_live_nodes";
/// Gauge: users whose presence viewers here follow.
pub const PRESENCE_SUBJECTS: &str = "peerline_presence_subjects";
/// Gauge: of those, users known from other supernodes' reports.
pub const PRESENCE_REMOTE: &str = "peerline_presence_remote_subjects";
/// Counter, label `reason` (closed/deadline): password hashes given up while queued, because
/// their connection closed or their deadline passed.
pub const HASHES_ABANDONED: &str = "peerline_password_hashes_abandoned_total";
/// Counter, label `why` (all/per_source): connections closed before TLS because too many
/// handshakes were running (in all, or from their source).
pub const HANDSHAKES_REFUSED: &str = "peerline_tls_handshakes_refused_total";
/// Counter: logins refused by admission control (the supernode was at its login rate).
pub const LOGINS_REFUSED: &str = "peerline_logins_refused_total";
/// Counter: bus messages saved by coalescing bursts (older presence reports superseded, several
/// messages to one destination sent as one).
pub const BUS_COALESCED: &str = "peerline_bus_coalesced_total";
/// Gauge: seconds the database took to answer a round trip at the last scrape.
pub const STORE_PING_SECONDS: &str = "peerline_store_ping_seconds";
/// Gauge: 1 when the database answered at the last scrape, else 0.
pub const STORE_UP: &str = "peerline_store_up";
/// Gauge: 1 when connected to the cluster bus, else 0.
pub const BUS_UP: &str = "peerline_bus_up";
/// Gauge, label `version`: always 1; the build that runs.
pub const BUILD_INFO: &str = "peerline_build_info";
/// Histogram, label `kind` (the request's `type`): seconds from reading a request to having its
/// answer (sending it is not counted).
pub const REQUEST_SECONDS: &str = "peerline_request_seconds";
/// Histogram, labels `method` (password/token) and `result` (ok/fail/throttled): seconds a
/// login took, password hash included.
pub const LOGIN_SECONDS: &str = "peerline_login_seconds";

/// What a family is, as Prometheus's `# TYPE` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (reset at restart); its name ends in `_total`.
    Counter,
    /// A value now.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric family the supernode exports.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its `# HELP` text.
    pub help: &'static str,
    /// For a counter, the label sets registered at 0 at start (`&[]` is the series without
    /// labels); a counter whose labels are open-ended starts with its most watched ones.
    pub start: &'static [&'static [(&'static str, &'static str)]],
}

const NO_LABELS: &[&[(&str, &str)]] = &[&[]];

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family { name, kind: Kind::Counter, help, start: NO_LABELS }
}

const fn labelled(
    name: &'static str,
    help: &'static str,
    start: &'static [&'static [(&'static str, &'static str)]],
) -> Family {
    Family { name, kind: Kind::Counter, help, start }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family { name, kind: Kind::Gauge, help, start: &[] }
}

const fn histogram(name: &'static str, help: &'static str) -> Family {
    Family { name, kind: Kind::Histogram, help, start: &[] }
}

/// Every family the supernode itself exports (the STUN responder describes its own, and the
/// `process_*` families are rendered from /proc at each scrape).
pub const FAMILIES: &[Family] = &[
    gauge(BUILD_INFO, "Always 1; the label version is the supernode's version"),
    gauge(CONNECTIONS, "Client connections open now"),
    gauge(ONLINE_USERS, "Users with at least one logged-in device"),
    counter(CONNECTIONS_TOTAL, "Client connections accepted"),
    counter(CONNECTIONS_REFUSED, "Connections refused because of limits.max_connections"),
    labelled(
        LOGINS,
        "Login attempts by method (password, token) and result (ok, fail, throttled)",
        &[
            &[("method", "password"), ("result", "ok")],
            &[("method", "password"), ("result", "fail")],
            &[("method", "password"), ("result", "throttled")],
            &[("method", "token"), ("result", "ok")],
            &[("method", "token"), ("result", "fail")],
            &[("method", "token"), ("result", "throttled")],
        ],
    ),
    histogram(LOGIN_SECONDS, "Seconds a login took, by method and result"),
    counter(LOGINS_REFUSED, "Logins refused by admission control (limits.logins_per_second)"),
    counter(REGISTRATIONS, "Accounts registered"),
    counter(MESSAGES, "Instant messages stored"),
    counter(REQUESTS, "Requests handled"),
    histogram(REQUEST_SECONDS, "Seconds from reading a request to its answer, by kind"),
    labelled(
        REQUEST_ERRORS,
        "Requests answered with an error, by code",
        &[&[("code", "internal")], &[("code", "rate_limited")], &[("code", "login_throttled")]],
    ),
    counter(BAD_FRAMES, "Frames that could not be decoded"),
    counter(SLOW_READER_DISCONNECTS, "Connections dropped because they did not read"),
    labelled(
        HANDSHAKES_REFUSED,
        "Connections closed before TLS because too many handshakes ran (why: all, per_source)",
        &[&[("why", "all")], &[("why", "per_source")]],
    ),
    labelled(
        HASHES_ABANDONED,
        "Password hashes given up while queued (reason: closed, deadline)",
        &[&[("reason", "closed")], &[("reason", "deadline")]],
    ),
    labelled(
        CALL_INVITES,
        "Calls placed, by result (ringing, busy, unavailable, refused)",
        &[
            &[("result", "ringing")],
            &[("result", "busy")],
            &[("result", "unavailable")],
            &[("result", "refused")],
        ],
    ),
    counter(CALLS_ANSWERED, "Calls answered"),
    counter(MISSED_CALLS, "Missed calls recorded"),
    gauge(CALLS, "Calls ringing or answered now"),
    counter(CONTACT_CONFLICTS, "Contact changes decided again after a concurrent change"),
    gauge(STORE_UP, "1 when the database answered a write check at the last scrape, else 0"),
    gauge(STORE_PING_SECONDS, "Seconds the database took to answer at the last scrape"),
    gauge(BUS_UP, "1 when connected to the cluster bus, else 0"),
    gauge(LIVE_NODES, "Other supernodes heard on the bus and not down"),
    gauge(DIRECTORY_USERS, "Users this supernode watches on the bus"),
    gauge(PRESENCE_SUBJECTS, "Users whose presence viewers here follow"),
    gauge(PRESENCE_REMOTE, "Of those, users known from other supernodes' reports"),
    histogram(BUS_PUBLISH_SECONDS, "Seconds to hand a message to the bus"),
    histogram(BUS_DELIVER_SECONDS, "Seconds from another supernode publishing to this one's hub"),
    counter(BUS_RECEIVED, "Messages received from other supernodes"),
    counter(BUS_BAD_MESSAGES, "Messages from other supernodes that could not be decoded"),
    counter(BUS_DROPPED, "Messages for other supernodes dropped (bus down or queue full)"),
    counter(BUS_COALESCED, "Bus messages saved by coalescing bursts"),
];

/// Bucket bounds of every histogram, in seconds: from a token login (about half a millisecond)
/// to a password hash waiting its turn behind others (seconds).
pub const BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Describes every family to the installed recorder, sets `peerline_build_info` and registers
/// the counters at 0 (incrementing by 0: a second supernode in one process keeps the counts).
pub fn register_families() {
    for family in FAMILIES {
        match family.kind {
            Kind::Counter => {
                metrics::describe_counter!(family.name, family.help);
                for labels in family.start {
                    let labels: Vec<metrics::Label> =
                        labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect();
                    metrics::counter!(family.name, labels).increment(0);
                }
            }
            Kind::Gauge => metrics::describe_gauge!(family.name, family.help),
            Kind::Histogram => metrics::describe_histogram!(family.name, family.help),
        }
    }
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The name a family's samples share with its type suffix taken off (`_total` of a counter):
/// two families of one stem are ambiguous to OpenMetrics readers and to people.
pub fn stem(family: &Family) -> &'static str {
    match family.kind {
        Kind::Counter => family.name.strip_suffix("_total").unwrap_or(family.name),
        Kind::Gauge | Kind::Histogram => family.name,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_counters_end_in_total_and_no_two_families_share_a_stem() {
        let mut stems = HashSet::new();
        for f in FAMILIES {
            assert!(stems.insert(stem(f)), "{} shares its stem with another family", f.name);
            assert_eq!(f.kind == Kind::Counter, f.name.ends_with("_total"), "{}", f.name);
            assert!(f.name.starts_with("peerline_") && !f.help.is_empty(), "{}", f.name);
        }
    }

    /// docs/operations.md is what operators build dashboards from: it names every family, and
    /// none that is gone.
    #[test]
    fn the_operations_doc_lists_every_family() {
        let doc = include_str!("../../../docs/operations.md");
        for f in FAMILIES {
            assert!(doc.contains(&format!("`{}`", f.name)), "docs/operations.md lacks {}", f.name);
        }
        let known: HashSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
        // Words in backticks that name a metric (not a log filter such as `peerline_x=debug`).
        for word in doc.split('`').filter(|w| w.starts_with("peerline_") && !w.contains('=')) {
            let name = word.split(['{', ' ']).next().unwrap();
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|n| known.contains(n)))
                .unwrap_or(name);
            let stun = name.starts_with("peerline_stun_");
            assert!(known.contains(name) || stun, "docs/operations.md names {name}, not exported");
        }
    }
}
