//! The supernode in a network of many: which storage and bus it opens, and the two tasks that
//! carry the hub's messages to the other supernodes and theirs to the hub.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use peerline_bus::local::LocalNetwork;
use peerline_bus::{Address, Bus, BusConfig, BusEvent, Bytes};
use peerline_store::Store;
use peerline_store_sqlite::SqliteStore;
use peerline_supernode_core::{BusMessage, CallRecord, Route, coalesce};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{Config, redact_url};
use crate::metrics as m;
use crate::state::{BusJob, Shared};

/// Opens the store the config names: the cluster's PostgreSQL, or SQLite in the data dir.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &config.cluster.database_url {
        Some(url) => {
            let store = peerline_store_postgres::PostgresStore::connect(url)
                .await
                .with_context(|| format!("connecting to PostgreSQL at {}", redact_url(url)))?;
            info!(url = %redact_url(url), "storage: PostgreSQL");
            Ok(Arc::new(store))
        }
        None => {
            let path = config.database_path();
            let store = SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening database {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

/// Joins the bus the config names: NATS, or an in-process bus of one supernode.
pub async fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    let c = &config.cluster;
    let mut bus_config = BusConfig::new(c.node_id.clone(), c.network.clone());
    bus_config.user_shards = c.user_shards;
    match &c.nats_url {
        Some(url) => {
            let bus = peerline_bus_nats::NatsBus::connect(url, bus_config)
                .await
                .with_context(|| format!("connecting to NATS at {}", redact_url(url)))?;
            info!(url = %redact_url(url), node = %c.node_id, "cluster bus: NATS");
            Ok(Arc::new(bus))
        }
        None => {
            let bus = LocalNetwork::new().node(bus_config).context("starting the local bus")?;
            Ok(Arc::new(bus))
        }
    }
}

/// Publishes the hub's messages in order, until the hub's queue closes. A message the bus
/// cannot take is dropped and counted: delivery between supernodes is at most once, and what
/// must not be lost is in the database before it is pushed.
pub async fn publish_loop(bus: Arc<dyn Bus>, mut queue: mpsc::Receiver<BusJob>) {
    while let Some(first) = queue.recv().await {
        // Whatever queued up meanwhile goes together: a burst (a mass reconnect) is coalesced
        // and batched per destination; a lone message goes at once, as it is.
        let mut jobs = vec![first];
        while jobs.len() < BURST {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut messages = Vec::new();
        for job in jobs {
            match job {
                BusJob::Publish(route, msg) => messages.push((route, msg)),
                BusJob::Register(call_id, record) => register(&*bus, &call_id, &record).await,
                BusJob::Unregister(call_id) => {
                    if let Err(e) = bus.delete_call(&call_id).await {
                        debug!(error = %e, "forgetting a call failed");
                    }
                }
            }
        }
        let queued = messages.len();
        let shaped = coalesce(messages);
        if shaped.len() < queued {
            metrics::counter!(m::BUS_COALESCED).increment((queued - shaped.len()) as u64);
        }
        for (route, msg) in shaped {
            publish(&*bus, route, &msg).await;
        }
    }
}

/// Most jobs taken from the queue at once.
const BURST: usize = 4096;

async fn register(bus: &dyn Bus, call_id: &str, record: &CallRecord) {
    let record = match serde_json::to_vec(record) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            warn!(error = %e, "a call record could not be encoded");
            return;
        }
    };
    if let Err(e) = bus.put_call(call_id, record).await {
        warn!(error = %e, "registering an answered call failed");
    }
}

async fn publish(bus: &dyn Bus, route: Route, msg: &BusMessage) {
    let to = match route {
        Route::User(user) => Address::User(user),
        Route::Node(node) => Address::Node(node),
    };
    let payload = match serde_json::to_vec(msg) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            warn!(error = %e, "a bus message could not be encoded");
            return;
        }
    };
    let started = Instant::now();
    match bus.publish(&to, payload).await {
        Ok(()) => {
            metrics::histogram!(m::BUS_PUBLISH_SECONDS).record(started.elapsed().as_secs_f64());
        }
        Err(e) => {
            metrics::counter!(m::BUS_DROPPED).increment(1);
            debug!(error = %e, "a bus message was dropped");
        }
    }
}

/// Feeds what other supernodes send to the hub, until the bus closes.
pub async fn receive_loop(shared: Arc<Shared>, mut events: mpsc::Receiver<BusEvent>) {
    // The incarnation each supernode was last heard with: a new one means it restarted.
    let mut incarnations: HashMap<String, u64> = HashMap::new();
    while let Some(event) = events.recv().await {
        match event {
            BusEvent::Message { from, payload, sent, .. } => {
                metrics::counter!(m::BUS_RECEIVED).increment(1);
                match serde_json::from_slice::<BusMessage>(&payload) {
                    Ok(msg) => {
                        shared.with_hub(|h| h.handle_bus(&from, msg, Instant::now()));
                        // A sender whose clock runs ahead gives no figure rather than a zero.
                        if let Some(latency) = sent.and_then(|s| s.elapsed().ok()) {
                            metrics::histogram!(m::BUS_DELIVER_SECONDS)
                                .record(latency.as_secs_f64());
                        }
                    }
                    Err(e) => {
                        metrics::counter!(m::BUS_BAD_MESSAGES).increment(1);
                        warn!(%from, error = %e, "an undecodable message from another supernode");
                    }
                }
            }
            BusEvent::NodeUp { node, incarnation } => {
                info!(%node, "supernode up");
                let restarted = incarnations
                    .insert(node.clone(), incarnation)
                    .is_some_and(|i| i != incarnation);
                if restarted {
                    shared.with_hub(|h| h.node_gone(&node, Instant::now()));
                }
            }
            BusEvent::NodeDown { node } => {
                warn!(%node, "supernode down");
                incarnations.remove(&node);
                shared.with_hub(|h| h.node_gone(&node, Instant::now()));
            }
        }
    }
}
