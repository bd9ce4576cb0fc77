//! Settings of a call's media ([`MediaConfig`]) and the side it is on ([`Role`]).

use std::time::Duration;

/// Settings of a call's media. The defaults suit voice over the internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Delay between the arrival of the first packet and its playout; it absorbs network
    /// jitter. Default 60 ms (covers 40 ms of jitter plus one frame).
    pub jitter_delay: Duration,
    /// Opus target bitrate in bits per second. Default 32 000, enough for wideband speech with
    /// in-band FEC.
    pub opus_bitrate: i32,
    /// Opus encoder complexity, 0 (fastest) to 10 (best). Default 10 (about 265 µs per frame
    /// on one core here).
    pub opus_complexity: i32,
    /// Whether the encoder adds in-band forward error correction (the previous frame at low
    /// bitrate), so a single lost packet is recovered from the next. Default on.
    pub fec: bool,
    /// The packet loss the encoder plans its FEC for, in percent. Default 10.
    pub expected_loss_percent: i32,
    /// Discontinuous transmission: during silence the encoder sends almost nothing. Default on.
    pub dtx: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            jitter_delay: Duration::from_millis(60),
            opus_bitrate: 32_000,
            opus_complexity: 10,
            fec: true,
            expected_loss_percent: 10,
            dtx: true,
        }
    }
}

/// Which side of the offer/answer exchange this call is (RFC 3264). The offerer is also the
/// ICE controlling agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The caller: creates the offer, accepts the answer.
    Offerer,
    /// The callee: accepts the offer, returns the answer.
    Answerer,
}
