//! The jitter buffer for one incoming audio stream, independent of the codec.
//!
//! Packets are kept by RTP timestamp (extended to 64 bits, 48 kHz). Playout starts a set delay
//! after the first packet arrives and then advances by exactly the audio it plays, so the delay
//! stays what the first packet set. Each [`JitterBuffer::step`] says what to do for the next
//! piece of audio: decode a packet, recover a missing one from the next packet's FEC, conceal,
//! or play silence because the stream paused.
//!
//! The delay starts at the configured target and adapts in one direction quickly and in the
//! other slowly: a packet that arrives just after its slot was concealed is played after all,
//! which stretches the delay by its lateness (up to [`MAX_DELAY`]); after [`CALM_STEPS`] without
//! a late packet, one packet is skipped to give 20 ms of that back.
//!
//! Bounded by design: at most [`MAX_PACKETS`] are held, a backlog beyond the target is dropped,
//! and a timestamp jump or a long pause makes the buffer start over instead of waiting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::FRAME_SAMPLES;
use crate::codec::OPUS_GRANULE;

/// Most packets held (5 s of 20 ms packets); older ones are dropped first.
const MAX_PACKETS: usize = 250;

/// A backlog this far beyond the target (in samples, 100 ms) is cut back to the target.
const MAX_EXCESS: u64 = 4_800;

/// A packet this far ahead of the playout point (2 s) means the sender's timeline restarted.
const MAX_JUMP: u64 = 96_000;

/// After this much concealment with an empty buffer (200 ms), the stream counts as paused:
/// playout plays silence and the next packet sets a fresh delay.
const MAX_EMPTY: u64 = 9_600;

/// The adaptive delay never grows beyond this (in samples, 200 ms).
const MAX_DELAY: u64 = 9_600;

/// Packets played without a late one (10 s) before the delay shrinks by one frame.
const CALM_STEPS: u32 = 500;

const FRAME: u64 = FRAME_SAMPLES as u64;

struct Packet {
    payload: Arc<[u8]>,
    samples: u64,
}

enum State {
    /// No packets (yet, or since the stream paused).
    Idle,
    /// Packets are arriving; playout starts at `until`.
    Buffering { until: Instant },
    /// Playing: `next_ts` is the timestamp of the next sample to play; `concealed_from` is where
    /// the current run of concealed audio started, if the last step concealed.
    Playing { next_ts: u64, empty: u64, concealed_from: Option<u64> },
}

/// What [`JitterBuffer::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Queued for playout.
    Accepted,
    /// It arrived just after its slot was concealed: playout steps back to play it, and the
    /// delay grows by its lateness.
    Stretched,
    /// Its playout time has passed; discarded.
    Late,
    /// A packet with this timestamp is already queued.
    Duplicate,
    /// Its timestamp jumped far ahead: the buffer started over with it.
    Restarted,
}

/// What to do for the next piece of audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Playout has not started: there is no audio yet.
    NotStarted,
    /// The stream is paused: play this many samples of silence.
    Silence(usize),
    /// Decode this packet.
    Packet { payload: Arc<[u8]> },
    /// The packet before `next` is missing: recover `samples` from `next`'s in-band FEC.
    Fec { next: Arc<[u8]>, samples: usize },
    /// Audio is missing: conceal this many samples.
    Conceal(usize),
}

/// Counters of the buffer's decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JitterCounters {
    /// Packets discarded because they arrived after their playout time.
    pub late: u64,
    /// Packets discarded to cut a backlog, shrink the delay, or because the buffer was full.
    pub overflow: u64,
    /// Times playout started over (timestamp jump).
    pub restarts: u64,
}

pub(crate) struct JitterBuffer {
    /// The configured delay, in samples.
    base: u64,
    /// Delay added by adaptation, in samples.
    extra: u64,
    calm: u32,
    packets: BTreeMap<u64, Packet>,
    state: State,
    has_played: bool,
    counters: JitterCounters,
}

impl JitterBuffer {
    pub(crate) fn new(delay: Duration) -> Self {
        JitterBuffer {
            base: u64::try_from(delay.as_micros().saturating_mul(48) / 1000).unwrap_or(u64::MAX),
            extra: 0,
            calm: 0,
            packets: BTreeMap::new(),
            state: State::Idle,
            has_played: false,
            counters: JitterCounters::default(),
        }
    }

    pub(crate) fn counters(&self) -> JitterCounters {
        self.counters
    }

    /// The current playout delay target.
    pub(crate) fn delay(&self) -> Duration {
        Duration::from_micros(self.target_samples().saturating_mul(1000) / 48)
    }

    fn target_samples(&self) -> u64 {
        self.base.saturating_add(self.extra)
    }

    fn start_buffering(&mut self, now: Instant) {
        let delay = self.delay();
        self.state = State::Buffering { until: now.checked_add(delay).unwrap_or(now) };
    }

    /// Queues a packet of `samples` samples with RTP timestamp `ts` that arrived at `now`.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        ts: u64,
        payload: Arc<[u8]>,
        samples: u64,
    ) -> Inserted {
        let mut result = Inserted::Accepted;
        match self.state {
            State::Idle => {
                self.packets.clear();
                self.start_buffering(now);
            }
            State::Buffering { .. } => {}
            State::Playing { next_ts, concealed_from, .. } => {
                if ts < next_ts {
                    let lateness = (next_ts - ts).div_ceil(FRAME) * FRAME;
                    let max_extra = MAX_DELAY.saturating_sub(self.base);
                    let concealed = concealed_from.is_some_and(|from| ts >= from);
                    if !concealed || self.extra + lateness > max_extra {
                        self.counters.late += 1;
                        return Inserted::Late;
                    }
                    // Everything from `ts` on was concealed: play the real packet after all.
                    self.extra += lateness;
                    self.calm = 0;
                    self.state = State::Playing { next_ts: ts, empty: 0, concealed_from: None };
                    result = Inserted::Stretched;
                } else if ts - next_ts > MAX_JUMP {
                    self.packets.clear();
                    self.start_buffering(now);
                    self.counters.restarts += 1;
                    result = Inserted::Restarted;
                }
            }
        }
        if self.packets.contains_key(&ts) {
            return Inserted::Duplicate;
        }
        self.packets.insert(ts, Packet { payload, samples });
        while self.packets.len() > MAX_PACKETS {
            self.packets.pop_first();
            self.counters.overflow += 1;
        }
        result
    }

    /// Decides what to play next. Every step but [`Step::NotStarted`] covers at least 120
    /// samples (2.5 ms) and at most one packet.
    pub(crate) fn step(&mut self, now: Instant) -> Step {
        loop {
            match self.state {
                State::Idle => return self.nothing_to_play(),
                State::Buffering { until } => {
                    if now < until {
                        return self.nothing_to_play();
                    }
                    let Some((&first, _)) = self.packets.first_key_value() else {
                        self.state = State::Idle;
                        return self.nothing_to_play();
                    };
                    self.state = State::Playing { next_ts: first, empty: 0, concealed_from: None };
                }
                State::Playing { next_ts, empty, concealed_from } => {
                    let next_ts = self.cut_backlog(next_ts);
                    if let Some(packet) = self.packets.remove(&next_ts) {
                        let after = next_ts + packet.samples;
                        let after = self.shrink_when_calm(after);
                        self.play(after, 0, None);
                        return Step::Packet { payload: packet.payload };
                    }
                    let concealed_from = Some(concealed_from.unwrap_or(next_ts));
                    let Some((&ahead, packet)) = self.packets.range(next_ts..).next() else {
                        // Nothing queued: conceal for a while, then call the stream paused.
                        let empty = empty + FRAME;
                        if empty > MAX_EMPTY {
                            self.state = State::Idle;
                            return self.nothing_to_play();
                        }
                        self.play(next_ts + FRAME, empty, concealed_from);
                        return Step::Conceal(FRAME_SAMPLES);
                    };
                    let gap = ahead - next_ts;
                    let missing = gap.min(FRAME) / OPUS_GRANULE * OPUS_GRANULE;
                    if missing == 0 {
                        // The sender's timestamps are not on the 2.5 ms grid: skip to the packet.
                        self.state =
                            State::Playing { next_ts: ahead, empty: 0, concealed_from: None };
                        continue;
                    }
                    let next = packet.payload.clone();
                    self.play(next_ts + missing, 0, concealed_from);
                    let samples = usize::try_from(missing).unwrap_or(FRAME_SAMPLES);
                    return if gap <= FRAME {
                        Step::Fec { next, samples }
                    } else {
                        Step::Conceal(samples)
                    };
                }
            }
        }
    }

    fn play(&mut self, next_ts: u64, empty: u64, concealed_from: Option<u64>) {
        self.has_played = true;
        self.state = State::Playing { next_ts, empty, concealed_from };
    }

    /// After a long calm, gives back one frame of adaptive delay by skipping the next queued
    /// packet (if it is there); returns the new playout point.
    fn shrink_when_calm(&mut self, next_ts: u64) -> u64 {
        if self.extra == 0 {
            return next_ts;
        }
        self.calm += 1;
        if self.calm < CALM_STEPS {
            return next_ts;
        }
        let Some(packet) = self.packets.remove(&next_ts) else { return next_ts };
        self.calm = 0;
        self.extra = self.extra.saturating_sub(FRAME);
        self.counters.overflow += 1;
        next_ts + packet.samples
    }

    fn nothing_to_play(&self) -> Step {
        if self.has_played { Step::Silence(FRAME_SAMPLES) } else { Step::NotStarted }
    }

    /// Drops the oldest packets when more audio is queued than the target plus [`MAX_EXCESS`]
    /// (the sender's clock runs fast, or a burst arrived), and returns the new playout point.
    fn cut_backlog(&mut self, next_ts: u64) -> u64 {
        let Some((&last, packet)) = self.packets.last_key_value() else { return next_ts };
        let target = self.target_samples();
        let queued = (last + packet.samples).saturating_sub(next_ts);
        if queued <= target + MAX_EXCESS {
            return next_ts;
        }
        let keep_from = (last + packet.samples).saturating_sub(target + FRAME);
        while let Some((&ts, _)) = self.packets.first_key_value() {
            if ts >= keep_from {
                break;
            }
            self.packets.pop_first();
            self.counters.overflow += 1;
        }
        let next_ts = self.packets.first_key_value().map_or(keep_from, |(&ts, _)| ts);
        self.state = State::Playing { next_ts, empty: 0, concealed_from: None };
        next_ts
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn payload(n: u8) -> Arc<[u8]> {
        Arc::from(vec![n])
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn waits_for_the_target_delay_then_plays_in_order() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(60));
        assert_eq!(jb.step(t0), Step::NotStarted);
        jb.insert(t0, 1000, payload(0), FRAME);
        jb.insert(t0 + ms(20), 1000 + FRAME, payload(1), FRAME);
        assert_eq!(jb.step(t0 + ms(40)), Step::NotStarted);
        assert_eq!(jb.step(t0 + ms(60)), Step::Packet { payload: payload(0) });
        assert_eq!(jb.step(t0 + ms(80)), Step::Packet { payload: payload(1) });
        // Nothing more: concealment.
        assert_eq!(jb.step(t0 + ms(100)), Step::Conceal(FRAME_SAMPLES));
    }

    #[test]
    fn reorders_and_uses_fec_for_a_single_missing_packet() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(60));
        jb.insert(t0, 0, payload(0), FRAME);
        jb.insert(t0, 3 * FRAME, payload(3), FRAME);
        jb.insert(t0, 2 * FRAME, payload(2), FRAME);
        let now = t0 + ms(60);
        assert_eq!(jb.step(now), Step::Packet { payload: payload(0) });
        assert_eq!(jb.step(now), Step::Fec { next: payload(2), samples: FRAME_SAMPLES });
        assert_eq!(jb.step(now), Step::Packet { payload: payload(2) });
        assert_eq!(jb.step(now), Step::Packet { payload: payload(3) });
    }

    #[test]
    fn conceals_longer_gaps_then_uses_fec_for_the_last_missing_frame() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(0));
        jb.insert(t0, 0, payload(0), FRAME);
        jb.insert(t0, 3 * FRAME, payload(3), FRAME);
        assert_eq!(jb.step(t0), Step::Packet { payload: payload(0) });
        assert_eq!(jb.step(t0), Step::Conceal(FRAME_SAMPLES));
        assert_eq!(jb.step(t0), Step::Fec { next: payload(3), samples: FRAME_SAMPLES });
        assert_eq!(jb.step(t0), Step::Packet { payload: payload(3) });
    }

    #[test]
    fn late_and_duplicate_packets_are_discarded() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(0));
        assert_eq!(jb.insert(t0, FRAME, payload(1), FRAME), Inserted::Accepted);
        assert_eq!(jb.insert(t0, FRAME, payload(1), FRAME), Inserted::Duplicate);
        assert_eq!(jb.step(t0), Step::Packet { payload: payload(1) });
        assert_eq!(jb.insert(t0, 0, payload(0), FRAME), Inserted::Late);
        assert_eq!(jb.counters().late, 1);
    }

    #[test]
    fn a_long_pause_turns_into_silence_and_the_next_packet_restarts_playout() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(60));
        jb.insert(t0, 0, payload(0), FRAME);
        let mut now = t0 + ms(60);
        assert_eq!(jb.step(now), Step::Packet { payload: payload(0) });
        let mut steps = Vec::new();
        for _ in 0..20 {
            now += ms(20);
            steps.push(jb.step(now));
        }
        assert!(steps[..10].iter().all(|s| *s == Step::Conceal(FRAME_SAMPLES)));
        assert!(steps[10..].iter().all(|s| *s == Step::Silence(FRAME_SAMPLES)));
        // The sender comes back with an older timeline (its source had stopped).
        jb.insert(now, 5 * FRAME, payload(5), FRAME);
        assert_eq!(jb.step(now + ms(20)), Step::Silence(FRAME_SAMPLES));
        assert_eq!(jb.step(now + ms(60)), Step::Packet { payload: payload(5) });
    }

    #[test]
    fn a_timestamp_jump_restarts_and_a_backlog_is_cut() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(60));
        jb.insert(t0, 0, payload(0), FRAME);
        assert_eq!(jb.step(t0 + ms(60)), Step::Packet { payload: payload(0) });
        assert_eq!(jb.insert(t0, 10 * MAX_JUMP, payload(9), FRAME), Inserted::Restarted);

        let mut jb = JitterBuffer::new(ms(60));
        jb.insert(t0, 0, payload(0), FRAME);
        assert_eq!(jb.step(t0 + ms(60)), Step::Packet { payload: payload(0) });
        // A burst of 20 packets (400 ms) arrives at once.
        for i in 1..=20u8 {
            jb.insert(t0, u64::from(i) * FRAME, payload(i), FRAME);
        }
        let Step::Packet { payload: first } = jb.step(t0 + ms(80)) else {
            panic!("expected a packet")
        };
        assert!(first[0] > 1, "the backlog should have been cut");
        assert!(jb.counters().overflow > 0);
    }

    #[test]
    fn misaligned_timestamps_skip_ahead_instead_of_looping() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(0));
        jb.insert(t0, 0, payload(0), FRAME);
        jb.insert(t0, FRAME + 7, payload(1), FRAME);
        assert_eq!(jb.step(t0), Step::Packet { payload: payload(0) });
        assert_eq!(jb.step(t0), Step::Packet { payload: payload(1) });
    }

    #[test]
    fn a_packet_just_after_its_concealed_slot_is_played_and_stretches_the_delay() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(60));
        jb.insert(t0, 0, payload(0), FRAME);
        assert_eq!(jb.step(t0 + ms(60)), Step::Packet { payload: payload(0) });
        // Packet 1 is late: its slot is concealed, then it arrives.
        assert_eq!(jb.step(t0 + ms(80)), Step::Conceal(FRAME_SAMPLES));
        assert_eq!(jb.insert(t0 + ms(90), FRAME, payload(1), FRAME), Inserted::Stretched);
        assert_eq!(jb.delay(), ms(80));
        jb.insert(t0 + ms(95), 2 * FRAME, payload(2), FRAME);
        assert_eq!(jb.step(t0 + ms(100)), Step::Packet { payload: payload(1) });
        assert_eq!(jb.step(t0 + ms(120)), Step::Packet { payload: payload(2) });
        // A packet whose slot was played from real audio stays late.
        assert_eq!(jb.insert(t0 + ms(125), FRAME, payload(1), FRAME), Inserted::Late);
    }

    #[test]
    fn the_delay_stretches_up_to_its_cap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(60));
        jb.insert(t0, 0, payload(0), FRAME);
        assert_eq!(jb.step(t0 + ms(60)), Step::Packet { payload: payload(0) });
        let mut stretched = 0;
        for i in 1..50u8 {
            assert_eq!(jb.step(t0), Step::Conceal(FRAME_SAMPLES));
            match jb.insert(t0, u64::from(i) * FRAME, payload(i), FRAME) {
                Inserted::Stretched => stretched += 1,
                Inserted::Late => break,
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(jb.step(t0), Step::Packet { payload: payload(i) });
        }
        assert_eq!(stretched, 7);
        assert_eq!(jb.delay(), ms(200));
    }

    #[test]
    fn the_delay_shrinks_after_a_long_calm() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(60));
        jb.insert(t0, 0, payload(0), FRAME);
        assert_eq!(jb.step(t0 + ms(60)), Step::Packet { payload: payload(0) });
        assert_eq!(jb.step(t0), Step::Conceal(FRAME_SAMPLES));
        assert_eq!(jb.insert(t0, FRAME, payload(1), FRAME), Inserted::Stretched);
        assert_eq!(jb.delay(), ms(80));
        for k in 2..5 {
            jb.insert(t0, k * FRAME, payload(0), FRAME);
        }
        for next in 5..u64::from(CALM_STEPS) + 10 {
            assert!(matches!(jb.step(t0), Step::Packet { .. }));
            jb.insert(t0, next * FRAME, payload(0), FRAME);
        }
        assert_eq!(jb.delay(), ms(60));
        assert_eq!(jb.counters().overflow, 1, "one packet skipped to shrink");
    }
}
