//! A bad network for tests: drops a share of packets at random and delays each by a random
//! jitter (which also reorders them).
//!
//! [`LossyLink`] is the sans-IO form, driven by a fake clock in core tests; [`LossySocket`] wraps
//! a [`PacketSocket`] for driver tests, impairing what it sends. Both take a seed, so a failing
//! run can be replayed.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tracing::debug;

use crate::driver::PacketSocket;

/// How bad the link is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Share of packets dropped, 0.0 to 1.0.
    pub loss: f64,
    /// Each packet is delayed by a uniformly random time from zero to this.
    pub max_jitter: Duration,
}

impl Impairment {
    /// A perfect link.
    pub const NONE: Impairment = Impairment { loss: 0.0, max_jitter: Duration::ZERO };

    /// Drops `loss` of the packets and delays each by up to `max_jitter`.
    pub fn new(loss: f64, max_jitter: Duration) -> Self {
        Impairment { loss: loss.clamp(0.0, 1.0), max_jitter }
    }

    /// Decides a packet's fate: `None` to drop it, or its delay.
    fn judge(&self, rng: &mut StdRng) -> Option<Duration> {
        if self.loss > 0.0 && rng.gen_bool(self.loss) {
            return None;
        }
        let max = u64::try_from(self.max_jitter.as_micros()).unwrap_or(u64::MAX);
        Some(Duration::from_micros(if max == 0 { 0 } else { rng.gen_range(0..=max) }))
    }
}

/// Counters of a lossy link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Packets handed to the link.
    pub sent: u64,
    /// Packets it dropped.
    pub dropped: u64,
}

/// A one-way link with loss and jitter, driven by the caller's clock.
#[derive(Debug)]
pub struct LossyLink<T> {
    impairment: Impairment,
    rng: StdRng,
    in_flight: BTreeMap<(Instant, u64), T>,
    next_id: u64,
    counters: LinkCounters,
}

impl<T> LossyLink<T> {
    /// A link with the given impairment and random seed.
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        LossyLink {
            impairment,
            rng: StdRng::seed_from_u64(seed),
            in_flight: BTreeMap::new(),
            next_id: 0,
            counters: LinkCounters::default(),
        }
    }

    /// Sends a packet at `now`. Returns whether the link kept it (it may be dropped).
    pub fn send(&mut self, now: Instant, packet: T) -> bool {
        self.counters.sent += 1;
        let Some(delay) = self.impairment.judge(&mut self.rng) else {
            self.counters.dropped += 1;
            return false;
        };
        self.in_flight.insert((now.checked_add(delay).unwrap_or(now), self.next_id), packet);
        self.next_id += 1;
        true
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.first_key_value().map(|((at, _), _)| *at)
    }

    /// The next packet that has arrived by `now`, earliest first.
    pub fn receive(&mut self, now: Instant) -> Option<T> {
        let (&(at, _), _) = self.in_flight.first_key_value()?;
        if at > now {
            return None;
        }
        self.in_flight.pop_first().map(|(_, packet)| packet)
    }

    /// What the link did so far.
    pub fn counters(&self) -> LinkCounters {
        self.counters
    }
}

/// Most packets a [`LossySocket`] holds back at once; beyond that it drops (a full queue).
const MAX_HELD: usize = 1024;

/// A socket that loses and delays what it sends; receiving is untouched. Wrap both peers'
/// sockets to impair both directions.
///
/// Delayed packets are sent by a tokio task that lives as long as the wrapper.
pub struct LossySocket<S> {
    inner: Arc<S>,
    impairment: Impairment,
    rng: Mutex<StdRng>,
    delayed: mpsc::Sender<(Instant, Vec<u8>, SocketAddr)>,
    counters: Mutex<LinkCounters>,
}

impl<S: PacketSocket> LossySocket<S> {
    /// Wraps `inner`. Must be called inside a tokio runtime.
    pub fn new(inner: S, impairment: Impairment, seed: u64) -> Self {
        let inner = Arc::new(inner);
        let (delayed, rx) = mpsc::channel(MAX_HELD);
        tokio::spawn(send_delayed(inner.clone(), rx));
        LossySocket {
            inner,
            impairment,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            delayed,
            counters: Mutex::new(LinkCounters::default()),
        }
    }

    /// What the socket did so far.
    pub fn counters(&self) -> LinkCounters {
        self.counters.lock().map_or_else(|poisoned| *poisoned.into_inner(), |c| *c)
    }

    fn count(&self, dropped: bool) {
        if let Ok(mut c) = self.counters.lock() {
            c.sent += 1;
            c.dropped += u64::from(dropped);
        }
    }
}

async fn send_delayed<S: PacketSocket>(
    socket: Arc<S>,
    mut rx: mpsc::Receiver<(Instant, Vec<u8>, SocketAddr)>,
) {
    let mut held: BTreeMap<(Instant, u64), (Vec<u8>, SocketAddr)> = BTreeMap::new();
    let mut id = 0u64;
    loop {
        let next = held.first_key_value().map(|((at, _), _)| *at);
        tokio::select! {
            packet = rx.recv() => match packet {
                Some((at, bytes, to)) => {
                    held.insert((at, id), (bytes, to));
                    id += 1;
                }
                None => return,
            },
            () = sleep_until_or_forever(next) => {
                while let Some(entry) = held.first_entry() {
                    if entry.key().0 > Instant::now() {
                        break;
                    }
                    let (bytes, to) = entry.remove();
                    if let Err(e) = socket.send_to(&bytes, to).await {
                        debug!(error = %e, "lossy socket: send failed");
                    }
                }
            }
        }
    }
}

async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl<S: PacketSocket> PacketSocket for LossySocket<S> {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let fate = match self.rng.lock() {
            Ok(mut rng) => self.impairment.judge(&mut rng),
            Err(_) => Some(Duration::ZERO),
        };
        let Some(delay) = fate else {
            self.count(true);
            return Ok(buf.len());
        };
        if delay.is_zero() {
            self.count(false);
            return self.inner.send_to(buf, target).await;
        }
        let sent_at = tokio::time::Instant::now().into_std();
        let at = sent_at.checked_add(delay).unwrap_or(sent_at);
        // A full queue drops the packet, as a congested link would.
        let kept = self.delayed.try_send((at, buf.to_vec(), target)).is_ok();
        self.count(!kept);
        Ok(buf.len())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.recv_from(buf).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_link_delivers_everything_in_order_at_once() {
        let t0 = Instant::now();
        let mut link = LossyLink::new(Impairment::NONE, 1);
        for i in 0..10 {
            assert!(link.send(t0, i));
        }
        let got: Vec<i32> = std::iter::from_fn(|| link.receive(t0)).collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn loss_and_jitter_stay_within_bounds() {
        let t0 = Instant::now();
        let mut link = LossyLink::new(Impairment::new(0.05, Duration::from_millis(40)), 7);
        for i in 0..10_000u32 {
            link.send(t0, i);
        }
        let dropped = link.counters().dropped;
        assert!((300..700).contains(&dropped), "dropped {dropped}");
        assert!(link.receive(t0 - Duration::from_millis(1)).is_none());
        assert!(link.next_arrival().unwrap() >= t0);
        let late = t0 + Duration::from_millis(40);
        let delivered = std::iter::from_fn(|| link.receive(late)).count() as u64;
        assert_eq!(delivered + dropped, 10_000);
    }

    #[test]
    fn the_same_seed_gives_the_same_fate() {
        let t0 = Instant::now();
        let run = || {
            let mut link = LossyLink::new(Impairment::new(0.3, Duration::from_millis(10)), 42);
            (0..100).map(|i| link.send(t0, i)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
