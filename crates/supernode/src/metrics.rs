//! Metric names, in one place so that dashboards and docs can rely on them.

/// Gauge: client connections open now.
pub const CONNECTIONS: &str = "peerline_connections";
/// Gauge: users with at least one logged-in device.
pub const ONLINE_USERS: &str = "peerline_online_users";
/// Counter: connections accepted.
pub const CONNECTIONS_TOTAL: &str = "peerline_connections_total";
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
