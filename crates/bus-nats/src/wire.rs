//! What goes on the NATS wire: subject names, the sender header, and the heartbeat payload.
//! Pure functions, so that the formats documented in the crate root are tested in one place.

use peerline_bus::{Address, UserId, valid_node_id};

/// The header that carries the sending supernode's id on every message.
pub const FROM_HEADER: &str = "Peerline-From";

/// The header that carries the addressed user's id (decimal) on every message to a user's shard
/// subject, where the receivers pick out the users they watch.
pub const USER_HEADER: &str = "Peerline-User";

/// Reads a [`USER_HEADER`] value; `None` unless it is a decimal account id.
pub fn decode_user(value: &str) -> Option<UserId> {
    let valid = !value.is_empty()
        && value.len() <= 20
        && value.strip_prefix('-').unwrap_or(value).bytes().all(|b| b.is_ascii_digit());
    if valid { value.parse().ok() } else { None }
}

/// The header that carries the sender's wall clock at publishing, in microseconds since the
/// Unix epoch (decimal), for the receivers' delivery latency.
pub const SENT_HEADER: &str = "Peerline-Sent";

/// The value of [`SENT_HEADER`] for `at`.
pub fn encode_sent(at: std::time::SystemTime) -> String {
    let micros = at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    micros.to_string()
}

/// Reads a [`SENT_HEADER`] value; `None` if it is not a number of microseconds.
pub fn decode_sent(value: &str) -> Option<std::time::SystemTime> {
    let micros: u64 = value.parse().ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_micros(micros))
}

/// The subjects of one network.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
    user_shards: u32,
}

impl Subjects {
    /// Subjects under `peerline.<network>.`, users split into `user_shards` shards; `network`
    /// must be a valid network name (checked by `BusConfig::validate`), so it is a single
    /// subject token.
    pub fn new(network: &str, user_shards: u32) -> Subjects {
        Subjects { prefix: format!("peerline.{network}"), user_shards: user_shards.max(1) }
    }

    /// The shard of a user: its id modulo the shard count (as `BusConfig::user_shard`).
    pub fn shard_of(&self, user: UserId) -> u32 {
        u32::try_from(user.rem_euclid(i64::from(self.user_shards))).unwrap_or(0)
    }

    /// `peerline.<network>.u.<shard>`: messages to the watchers of the users of one shard.
    pub fn shard(&self, shard: u32) -> String {
        format!("{}.u.{shard}", self.prefix)
    }

    /// The shard subject of a user: where messages to the user's watchers go (with the user
    /// in [`USER_HEADER`]).
    pub fn user(&self, user: UserId) -> String {
        self.shard(self.shard_of(user))
    }

    /// `peerline.<network>.n.<node id>`: messages to one supernode.
    pub fn node(&self, node: &str) -> String {
        format!("{}.n.{node}", self.prefix)
    }

    /// Where a message to `to` goes.
    pub fn address(&self, to: &Address) -> String {
        match to {
            Address::User(user) => self.user(*user),
            Address::Node(node) => self.node(node),
        }
    }

    /// `peerline.<network>.hb`: heartbeats and goodbyes of every supernode.
    pub fn heartbeat(&self) -> String {
        format!("{}.hb", self.prefix)
    }

    /// `peerline.<network>.sync`: a subject nobody subscribes to. A request to it comes back as
    /// "no responders" only after the server has processed everything this connection sent
    /// before, subscriptions included: a cheap barrier.
    pub fn sync(&self) -> String {
        format!("{}.sync", self.prefix)
    }
}

/// The JetStream key-value bucket of the call registry: `peerline_<network>_calls`.
pub fn calls_bucket(network: &str) -> String {
    format!("peerline_{network}_calls")
}

/// What a heartbeat-subject payload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    /// `up <node id> <incarnation>`: the node is alive.
    Up {
        /// The node's id.
        node: String,
        /// Its incarnation.
        incarnation: u64,
    },
    /// `down <node id> <incarnation>`: the node is leaving (sent by `close`).
    Down {
        /// The node's id.
        node: String,
        /// Its incarnation.
        incarnation: u64,
    },
}

impl Beat {
    /// The payload: ASCII `up|down`, a space, the node id, a space, the incarnation as 16
    /// lowercase hex digits.
    pub fn encode(&self) -> String {
        let (kind, node, incarnation) = match self {
            Beat::Up { node, incarnation } => ("up", node, incarnation),
            Beat::Down { node, incarnation } => ("down", node, incarnation),
        };
        format!("{kind} {node} {incarnation:016x}")
    }

    /// Reads a payload; `None` for anything that is not exactly what [`Beat::encode`] writes.
    pub fn decode(payload: &[u8]) -> Option<Beat> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.split(' ');
        let (kind, node, incarnation) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if parts.next().is_some()
            || !valid_node_id(node)
            || incarnation.len() != 16
            || !incarnation.bytes().all(hex)
        {
            return None;
        }
        let incarnation = u64::from_str_radix(incarnation, 16).ok()?;
        let node = node.to_owned();
        match kind {
            "up" => Some(Beat::Up { node, incarnation }),
            "down" => Some(Beat::Down { node, incarnation }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_header_round_trips_in_microseconds_and_rejects_garbage() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_764_000_000_123_456);
        assert_eq!(encode_sent(at), "1764000000123456");
        assert_eq!(decode_sent("1764000000123456"), Some(at));
        for bad in ["", "-1", "1.5", "12ab", "99999999999999999999999"] {
            assert_eq!(decode_sent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn subjects_are_as_documented() {
        let s = Subjects::new("prod", 256);
        assert_eq!(s.user(42), "peerline.prod.u.42");
        assert_eq!(s.user(256 + 42), "peerline.prod.u.42");
        assert_eq!(s.user(-1), "peerline.prod.u.255");
        assert_eq!(s.shard(7), "peerline.prod.u.7");
        assert_eq!(s.address(&Address::User(1000)), "peerline.prod.u.232");
        assert_eq!(Subjects::new("prod", 1).user(1000), "peerline.prod.u.0");
        assert_eq!(s.node("sn-1"), "peerline.prod.n.sn-1");
        assert_eq!(s.address(&Address::Node("b".into())), "peerline.prod.n.b");
        assert_eq!(s.heartbeat(), "peerline.prod.hb");
        assert_eq!(s.sync(), "peerline.prod.sync");
        assert_eq!(calls_bucket("prod"), "peerline_prod_calls");
    }

    #[test]
    fn user_header_takes_decimal_ids_only() {
        assert_eq!(decode_user("42"), Some(42));
        assert_eq!(decode_user("-7"), Some(-7));
        assert_eq!(decode_user("9223372036854775807"), Some(i64::MAX));
        for bad in ["", "-", "+1", "1.0", " 1", "0x10", "99999999999999999999", "1a"] {
            assert_eq!(decode_user(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn beats_round_trip() {
        for beat in [
            Beat::Up { node: "sn-1".into(), incarnation: 0 },
            Beat::Down { node: "a".into(), incarnation: u64::MAX },
            Beat::Up { node: "x".repeat(32), incarnation: 0x0123_4567_89ab_cdef },
        ] {
            assert_eq!(Beat::decode(beat.encode().as_bytes()), Some(beat));
        }
        assert_eq!(
            Beat::Up { node: "a".into(), incarnation: 255 }.encode(),
            "up a 00000000000000ff"
        );
    }

    #[test]
    fn bad_beats_are_rejected() {
        for bad in [
            &b""[..],
            b"up",
            b"up a",
            b"up a 00000000000000ff extra",
            b"up A 00000000000000ff",
            b"up a.b 00000000000000ff",
            b"up a 0xff",
            b"up a ff",
            b"up a 00000000000000fg",
            b"up a +0000000000000ff",
            b"up a 00000000000000FF",
            b"sideways a 00000000000000ff",
            b"up  a 00000000000000ff",
            b"\xff\xfe",
        ] {
            assert_eq!(Beat::decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
