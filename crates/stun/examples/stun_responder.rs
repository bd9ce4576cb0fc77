//! A standalone STUN responder for manual and interop testing:
//! `cargo run -p peerline-stun --example stun_responder -- 127.0.0.1:3478`.
//! Stops on Ctrl-C and prints the counters.

use std::net::SocketAddr;

use peerline_stun::{DEFAULT_LISTEN, ResponderConfig, StunServer};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = match std::env::args().nth(1) {
        Some(arg) => arg.parse::<SocketAddr>().map_err(std::io::Error::other)?,
        None => DEFAULT_LISTEN,
    };
    let server = StunServer::bind(addr, &ResponderConfig::default()).await?;
    println!("STUN responder on {}", server.local_addr()?);
    let stats = server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    println!("{stats:?}");
    Ok(())
}
