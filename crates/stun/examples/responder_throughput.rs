//! Measures the sans-IO core alone: Binding requests handled per second on one thread, with and
//! without rate limiting, and garbage dropped per second. No sockets: the figure is the ceiling
//! the UDP driver can reach, not the driver's own rate.
//! `cargo run --release -p peerline-stun --example responder_throughput`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use peerline_stun::{MAGIC_COOKIE, RateLimitConfig, Responder, ResponderConfig};

const ROUNDS: u32 = 5_000_000;

fn request() -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x00, 0x08];
    p.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    p.extend_from_slice(&[7; 12]);
    p.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b't', b'e', b's', b't']); // SOFTWARE
    p
}

fn measure(name: &str, config: &ResponderConfig, packet: &[u8], sources: u32) {
    let mut responder = Responder::new(config);
    let mut out = Vec::with_capacity(128);
    let start = Instant::now();
    for i in 0..ROUNDS {
        let source = SocketAddr::new(Ipv4Addr::from(0x0A00_0000 + i % sources).into(), 40_000);
        // A fake clock that advances 1 µs per packet, so the buckets refill as in real time.
        let now = start + Duration::from_micros(u64::from(i));
        black_box(responder.handle(black_box(packet), source, now, &mut out));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name}: {:.0} packets/s ({:.0} ns each); {:?}",
        f64::from(ROUNDS) / secs,
        secs * 1e9 / f64::from(ROUNDS),
        responder.stats()
    );
}

fn main() {
    let request = request();
    let unlimited = ResponderConfig { rate_limit: None, ..ResponderConfig::default() };
    let limited = ResponderConfig {
        rate_limit: Some(RateLimitConfig {
            global_per_second: 1e9,
            global_burst: 1e9,
            ..RateLimitConfig::default()
        }),
        ..ResponderConfig::default()
    };
    measure("binding, no rate limit", &unlimited, &request, 50_000);
    measure("binding, per-source limit, 50,000 sources", &limited, &request, 50_000);
    measure(
        "binding, default limits, 50,000 sources",
        &ResponderConfig::default(),
        &request,
        50_000,
    );
    measure("garbage (not STUN), 64 bytes", &ResponderConfig::default(), &[0x80; 64], 50_000);
}
