//! Interop with STUN clients not written here: coturn's `turnutils_stunclient` and aioice (the
//! ICE library under aiortc). scripts/setup installs both (aioice into target/interop-venv;
//! `PEERLINE_INTEROP_PYTHON` may name another Python that has it). Missing tools fail the test
//! with a message saying so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use peerline_stun::{ResponderConfig, Stats, StunServer};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

async fn start() -> (SocketAddr, oneshot::Sender<()>, JoinHandle<Stats>) {
    let server = StunServer::bind("127.0.0.1:0".parse().unwrap(), &ResponderConfig::default())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

async fn run(command: &mut Command) -> Output {
    let output = tokio::time::timeout(Duration::from_secs(20), command.kill_on_drop(true).output())
        .await
        .expect("client timed out")
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {:?}: {e}. Run scripts/setup: it installs coturn \
                 (turnutils_stunclient) and a Python with aioice (target/interop-venv)",
                command.as_std().get_program()
            )
        });
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[tokio::test]
async fn coturn_stunclient_learns_its_address() {
    let (server, stop, task) = start().await;
    let output = run(Command::new("turnutils_stunclient").args([
        "-p",
        &server.port().to_string(),
        "127.0.0.1",
    ]))
    .await;
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("UDP reflexive addr: 127.0.0.1:"));
    stop.send(()).unwrap();
    assert!(task.await.unwrap().answered >= 1);
}

#[tokio::test]
async fn aioice_gathers_a_server_reflexive_candidate() {
    let (server, stop, task) = start().await;
    // scripts/setup makes this venv; PEERLINE_INTEROP_PYTHON may name another Python with aioice.
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/interop-venv/bin/python");
    let python = std::env::var("PEERLINE_INTEROP_PYTHON").unwrap_or_else(|_| default.into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aioice_srflx.py");
    let output = run(Command::new(python).arg(script).arg(server.port().to_string())).await;
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("candidate srflx"));
    stop.send(()).unwrap();
    assert!(task.await.unwrap().answered >= 2);
}
