//! Sans-IO bookkeeping of one socket's Binding transactions: the requests it sent (transaction
//! id → send time) and the verdict on each datagram that comes back. No sockets, no clock: times
//! are nanoseconds since the start of the run, passed in.
//!
//! The transaction id (RFC 8489 §5: 96 bits) carries the socket's number (32 bits) and the
//! request's sequence number on that socket (64 bits), so a response is matched to its request
//! without a map: the slot of sequence number `s` is `s % window` in a ring. A response that
//! comes after its slot was reused (more than `window` requests later) no longer matches, and its
//! request counts as lost: the window is sized to several seconds of requests, far beyond any
//! timeout a STUN client uses (RFC 8489 §6.2.1: 39.5 s in total, but 500 ms for the first
//! retransmission).

use std::net::SocketAddr;

use peerline_stun::MAGIC_COOKIE;
use peerline_stun::client::{binding_request, mapped_address};

/// Size of a STUN header; a Binding request without attributes is exactly this.
pub const REQUEST_LEN: usize = 20;

/// What a received datagram turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A valid Binding success response to an open request of this socket, mapping exactly this
    /// socket's address; `latency_ns` after its request was sent.
    Answered {
        /// Nanoseconds between sending the request and handling the response.
        latency_ns: u64,
    },
    /// The answer to an open request of this socket, but not a valid Binding success response
    /// naming this socket's address (an error response, a wrong or missing XOR-MAPPED-ADDRESS,
    /// a length field that does not match the datagram). The request is closed.
    Wrong,
    /// Matches no open request of this socket: a duplicate, an answer later than the window, a
    /// transaction id of another socket or of nobody, or not STUN.
    Unmatched,
}

/// One slot of the ring: the request with sequence number `seq`, sent at `sent_ns`, still
/// waiting for its answer while `open`.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    seq: u64,
    sent_ns: u64,
    open: bool,
}

/// The transactions of one socket.
#[derive(Debug)]
pub struct Transactions {
    socket: u32,
    local: SocketAddr,
    next_seq: u64,
    slots: Vec<Slot>,
    /// Requests still open when their slot was reused: lost for good.
    expired: u64,
}

impl Transactions {
    /// Bookkeeping for socket number `socket`, bound to `local` (the address a correct server
    /// reports), remembering at least `window` requests (rounded up to a power of two).
    pub fn new(socket: u32, local: SocketAddr, window: usize) -> Self {
        let len = window.max(16).next_power_of_two();
        Self { socket, local, next_seq: 0, slots: vec![Slot::default(); len], expired: 0 }
    }

    /// The `k`th Binding request to send next (`k` = 0, 1, ... for a batch), not yet recorded:
    /// call [`Transactions::sent`] with how many of the batch went out.
    pub fn request(&self, k: u64) -> [u8; REQUEST_LEN] {
        binding_request(&self.transaction_id(self.next_seq.wrapping_add(k)))
    }

    /// Records that the first `count` requests from [`Transactions::request`] were sent at
    /// `now_ns`.
    pub fn sent(&mut self, count: u64, now_ns: u64) {
        for _ in 0..count {
            let seq = self.next_seq;
            let index = self.index(seq);
            if let Some(slot) = self.slots.get_mut(index) {
                if slot.open {
                    self.expired += 1;
                }
                *slot = Slot { seq, sent_ns: now_ns, open: true };
            }
            self.next_seq = seq.wrapping_add(1);
        }
    }

    /// Judges a datagram that arrived on this socket at `now_ns`, and closes the request it
    /// answers.
    pub fn on_response(&mut self, packet: &[u8], now_ns: u64) -> Verdict {
        let Some(transaction_id) = packet.get(8..20).and_then(|t| <[u8; 12]>::try_from(t).ok())
        else {
            return Verdict::Unmatched;
        };
        let (socket, seq) = split_transaction_id(&transaction_id);
        if socket != self.socket || packet.get(4..8) != Some(&MAGIC_COOKIE.to_be_bytes()[..]) {
            return Verdict::Unmatched;
        }
        let index = self.index(seq);
        let Some(slot) = self.slots.get_mut(index).filter(|s| s.open && s.seq == seq) else {
            return Verdict::Unmatched;
        };
        slot.open = false;
        let sent_ns = slot.sent_ns;
        let length_ok = packet
            .get(2..4)
            .and_then(|l| <[u8; 2]>::try_from(l).ok())
            .is_some_and(|l| usize::from(u16::from_be_bytes(l)) + REQUEST_LEN == packet.len());
        if length_ok && mapped_address(packet, &transaction_id) == Some(self.local) {
            Verdict::Answered { latency_ns: now_ns.saturating_sub(sent_ns) }
        } else {
            Verdict::Wrong
        }
    }

    /// Requests sent so far.
    pub fn sent_count(&self) -> u64 {
        self.next_seq
    }

    /// Requests still waiting for an answer (including those given up on when their slot was
    /// reused).
    pub fn open(&self) -> u64 {
        self.expired + self.slots.iter().filter(|s| s.open).count() as u64
    }

    fn transaction_id(&self, seq: u64) -> [u8; 12] {
        let mut id = [0u8; 12];
        let (socket, sequence) = id.split_at_mut(4);
        socket.copy_from_slice(&self.socket.to_be_bytes());
        sequence.copy_from_slice(&seq.to_be_bytes());
        id
    }

    fn index(&self, seq: u64) -> usize {
        // The ring's length is a power of two, so the mask keeps the index inside it.
        (seq as usize) & (self.slots.len() - 1)
    }
}

/// The socket number and sequence number a transaction id carries.
fn split_transaction_id(id: &[u8; 12]) -> (u32, u64) {
    let (socket, seq) = id.split_at(4);
    let socket = <[u8; 4]>::try_from(socket).map_or(0, u32::from_be_bytes);
    let seq = <[u8; 8]>::try_from(seq).map_or(0, u64::from_be_bytes);
    (socket, seq)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::time::Instant;

    use peerline_stun::{Responder, ResponderConfig};

    use super::*;

    const LOCAL: &str = "127.0.0.9:40000";

    /// What our own responder answers to `request` from `source`.
    fn answer(request: &[u8], source: &str) -> Vec<u8> {
        let mut responder =
            Responder::new(&ResponderConfig { rate_limit: None, ..Default::default() });
        let mut out = Vec::new();
        responder.handle(request, source.parse().unwrap(), Instant::now(), &mut out);
        out
    }

    #[test]
    fn a_correct_answer_is_matched_once_with_its_latency() {
        let mut t = Transactions::new(3, LOCAL.parse().unwrap(), 64);
        let (first, second) = (t.request(0), t.request(1));
        assert_ne!(first, second);
        t.sent(2, 1_000);
        assert_eq!((t.sent_count(), t.open()), (2, 2));
        let reply = answer(&second, LOCAL);
        assert_eq!(t.on_response(&reply, 5_000), Verdict::Answered { latency_ns: 4_000 });
        assert_eq!(t.on_response(&reply, 6_000), Verdict::Unmatched, "a duplicate");
        assert_eq!(t.open(), 1);
    }

    #[test]
    fn a_wrong_mapped_address_or_an_error_closes_the_request_as_wrong() {
        let mut t = Transactions::new(0, LOCAL.parse().unwrap(), 64);
        let request = t.request(0);
        t.sent(1, 0);
        assert_eq!(t.on_response(&answer(&request, "127.0.0.9:40001"), 1), Verdict::Wrong);
        assert_eq!(t.open(), 0);

        let request = t.request(0);
        t.sent(1, 0);
        let mut error = answer(&request, LOCAL);
        error[1] = 0x11; // Binding error response
        assert_eq!(t.on_response(&error, 1), Verdict::Wrong);

        let request = t.request(0);
        t.sent(1, 0);
        let mut padded = answer(&request, LOCAL);
        padded.extend_from_slice(&[0; 4]); // longer than its length field says
        assert_eq!(t.on_response(&padded, 1), Verdict::Wrong);
    }

    #[test]
    fn other_sockets_unknown_ids_and_noise_are_unmatched() {
        let mut mine = Transactions::new(1, LOCAL.parse().unwrap(), 64);
        let other = Transactions::new(2, LOCAL.parse().unwrap(), 64);
        mine.sent(1, 0);
        assert_eq!(mine.on_response(&answer(&other.request(0), LOCAL), 1), Verdict::Unmatched);
        assert_eq!(mine.on_response(&answer(&mine.request(5), LOCAL), 1), Verdict::Unmatched);
        assert_eq!(mine.on_response(b"noise", 1), Verdict::Unmatched);
        assert_eq!(mine.on_response(&[], 1), Verdict::Unmatched);
        assert_eq!(mine.open(), 1);
    }

    #[test]
    fn an_answer_later_than_the_window_is_unmatched_and_its_request_lost() {
        let mut t = Transactions::new(0, LOCAL.parse().unwrap(), 16);
        let early = t.request(0);
        t.sent(1, 0);
        t.sent(16, 10); // reuses the slot of the first request
        assert_eq!(t.on_response(&answer(&early, LOCAL), 20), Verdict::Unmatched);
        assert_eq!(t.open(), 17);
    }
}
