//! The fake bus between hubs that the cluster tests share.

use std::time::Instant;

use peerline_supernode_core::{BusMessage, Hub, Route};

/// Carries one bus message from hub `from` as the real bus would: as JSON, to every other hub
/// holding a device of the user (`Route::User`) or to the hub named by its index
/// (`Route::Node`), skipping the hubs that are `down`.
pub fn carry(
    hubs: &mut [Hub],
    from: usize,
    to: Route,
    msg: &BusMessage,
    down: &[usize],
    now: Instant,
) {
    let json = serde_json::to_string(msg).unwrap();
    let targets: Vec<usize> = match to {
        Route::User(u) => (0..hubs.len()).filter(|t| *t != from && hubs[*t].is_online(u)).collect(),
        Route::Node(n) => vec![n.parse().unwrap()],
    };
    for t in targets.into_iter().filter(|t| !down.contains(t)) {
        let msg: BusMessage = serde_json::from_str(&json).unwrap();
        hubs[t].handle_bus(&from.to_string(), msg, now);
    }
}
