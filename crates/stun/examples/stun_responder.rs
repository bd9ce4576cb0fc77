//! A standalone STUN responder for manual and interop testing and for throughput measurements:
//! `cargo run -p peerline-stun --example stun_responder -- 127.0.0.1:3478`.
//! Prints its address and process id, stops on Ctrl-C or SIGTERM and prints the counters.
//!
//! The rate limits default to the supernode's; a benchmark that asks from a few source
//! addresses lifts them with `--per-source-rate N` and `--global-rate N` (answers per second;
//! the limiter still runs, so its cost is measured) or turns them off with `--no-rate-limit`.

use std::net::SocketAddr;

use peerline_stun::{DEFAULT_LISTEN, RateLimitConfig, ResponderConfig, StunServer};

fn parse_args() -> Result<(SocketAddr, ResponderConfig), String> {
    let mut addr = DEFAULT_LISTEN;
    let mut config = ResponderConfig::default();
    let mut limits = RateLimitConfig::default();
    let mut limited = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<f64, String> {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--per-source-rate" => {
                limits.per_source_per_second = number(&arg)?;
                limits.per_source_burst = limits.per_source_per_second.max(40.0);
            }
            "--global-rate" => {
                limits.global_per_second = number(&arg)?;
                limits.global_burst = limits.global_per_second;
            }
            "--no-rate-limit" => limited = false,
            other => addr = other.parse().map_err(|e| format!("{other}: {e}"))?,
        }
    }
    config.rate_limit = limited.then_some(limits);
    Ok((addr, config))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (addr, config) = parse_args().map_err(std::io::Error::other)?;
    let server = StunServer::bind(addr, &config).await?;
    println!("STUN responder on {} (pid {})", server.local_addr()?, std::process::id());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stats = server
        .run(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await;
    println!("{stats:?}");
    Ok(())
}
