//! Binding and serving: the client listener (TLS WebSocket, or plain on loopback when asked),
//! the admin listener (`/healthz`, `/metrics`), the timer and retention tasks, and graceful
//! shutdown: stop accepting, tell every client, flush storage, return.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
// Signaling is small frames back and forth: without TCP_NODELAY, Nagle's algorithm and delayed
// ACKs add about 40 ms to every hop of a call setup.
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use peerline_supernode_core::{CallConfig, Hub, HubConfig, ThrottleConfig};
use peerline_wire::{EndReason, MAX_FRAME_BYTES, WS_PATH};
use tracing::{info, warn};

use crate::config::Config;
use crate::metrics as m;
use crate::passwords::Passwords;
use crate::proxy::{ClientAddr, ProxyProtocol};
use crate::state::{Shared, now_ms};
use crate::tls::{TlsIdentity, TlsReloader, load_identity};

/// A supernode with its sockets bound, ready to [`Supernode::run`].
pub struct Supernode {
    shared: Arc<Shared>,
    client: std::net::TcpListener,
    admin: std::net::TcpListener,
    stun: peerline_stun::StunServer,
    tls: Option<TlsIdentity>,
    /// What new TLS handshakes present (swapped by [`TlsReloader`]).
    rustls: Option<RustlsConfig>,
    /// The data dir's lock, held while this supernode exists.
    lock: crate::data_dir::DataDirLock,
}

fn hub_config(config: &Config) -> HubConfig {
    let l = &config.limits;
    HubConfig {
        heartbeat_timeout: Duration::from_secs(l.heartbeat_timeout_secs),
        login_timeout: Duration::from_secs(l.login_timeout_secs),
        requests_per_sec: l.requests_per_second,
        request_burst: l.request_burst,
        searches_per_minute: l.searches_per_minute,
        contact_requests_per_day: l.contact_requests_per_day,
        registrations_per_hour: l.registrations_per_address_per_hour,
        logins_per_sec: l.logins_per_second,
        login_burst: l.login_burst,
        max_violations: 100,
        max_connections_per_user: l.max_connections_per_user,
        max_connections_per_device: l.max_connections_per_device,
        max_pre_login_per_source: l.max_pre_login_per_source,
        login_per_account: ThrottleConfig::per_account(),
        login_per_device: ThrottleConfig::per_device(),
        login_per_address: ThrottleConfig::per_source(),
        hashes_per_source: l.password_hashes_per_source,
        password_logins_per_hour: l.password_logins_per_hour,
        calls: CallConfig {
            ring_timeout: Duration::from_secs(config.calls.ring_timeout_secs),
            max_calls_per_user: config.calls.max_calls_per_user,
            max_calls: config.calls.max_calls,
            invites_per_minute: config.calls.invites_per_minute,
            invite_burst: config.calls.invites_per_minute.max(1.0),
            ..CallConfig::default()
        },
    }
}

/// The process's Prometheus recorder, installed on first use with every family described and
/// every counter at 0. It must be installed before anything describes a metric (the STUN
/// responder does at bind): a description given to no recorder is lost, and its family would
/// be scraped without `# HELP`.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // With buckets, histograms are exported as Prometheus histograms (aggregatable over a
        // cluster) rather than as summaries; the bounds are constants, so this cannot fail.
        let builder = PrometheusBuilder::new()
            .set_buckets(m::BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Several supernodes in one test process share the first recorder.
        let _ = metrics::set_global_recorder(recorder);
        m::register_families();
        handle
    })
}

/// Checks that the store answers and takes writes: `ping`, then a purge of expired sessions
/// that cannot match a row (a cutoff before 1970, a batch of 0). The purge is still a DELETE
/// run by the store's writer, which a database open read-only (SQLite falls back to that when
/// it may not write the file) or a PostgreSQL standby refuses. The Store trait has no write
/// check of its own; this is the cheapest real write it offers.
async fn check_store(store: &dyn peerline_store::Store) -> Result<(), String> {
    let check = async {
        store.ping().await.map_err(|e| e.to_string())?;
        store.purge_expired_sessions(i64::MIN, 0).await.map_err(|e| e.to_string())?;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(result) => result,
        Err(_) => Err("no answer within 2 s".to_owned()),
    }
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<std::net::TcpListener> {
    let context = || format!("binding the {what} address {addr} (in use, or needs privileges?)");
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .with_context(context)?;
    // A restarted supernode must get its port back while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true).with_context(context)?;
    socket.bind(addr).with_context(context)?;
    let listener = socket.listen(4096).with_context(context)?;
    Ok(listener.into_std()?)
}

impl Supernode {
    /// Validates the config, opens storage, loads or creates the TLS identity, binds both
    /// listeners.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let _ = prometheus();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let lock = crate::data_dir::lock(&config.data_dir)?;
        let sqlite = config.cluster.database_url.is_none().then(|| config.database_path());
        crate::data_dir::check_writable(&config.data_dir, sqlite.as_deref())?;
        let store = crate::cluster::open_store(&config).await?;
        if let Err(e) = check_store(&*store).await {
            let what = match &sqlite {
                Some(path) => format!("the database {}", path.display()),
                None => "the PostgreSQL database".to_owned(),
            };
            anyhow::bail!("{what} does not take writes ({e}); check its owner and permissions");
        }
        let bus = crate::cluster::open_bus(&config).await?;
        let tls = if config.insecure_plaintext { None } else { Some(load_identity(&config)?) };
        let client = bind(config.listen, "client")?;
        let admin = bind(config.admin_listen, "admin")?;
        let limits = &config.limits;
        let stun_config = peerline_stun::ResponderConfig {
            rate_limit: Some(peerline_stun::RateLimitConfig {
                per_source_per_second: limits.stun_per_source_per_second,
                per_source_burst: limits.stun_per_source_burst,
                global_per_second: limits.stun_per_second,
                global_burst: limits.stun_burst,
                ..Default::default()
            }),
            ..Default::default()
        };
        let stun = peerline_stun::StunServer::bind(config.stun_listen, &stun_config)
            .await
            .with_context(|| format!("binding the STUN responder on UDP {}", config.stun_listen))?;
        let passwords = Passwords::new(config.limits.password_hash_concurrency)?;
        let hub = Hub::new(hub_config(&config), Instant::now());
        let rustls = tls.as_ref().map(|t| RustlsConfig::from_config(t.server_config.clone()));
        let stun_port = stun.local_addr().ok().map(|a| a.port());
        let shared = Arc::new(Shared::new(config, store, hub, passwords, stun_port, bus));
        Ok(Self { shared, client, admin, stun, tls, rustls, lock })
    }

    /// What reloads the TLS certificate for new connections (on SIGHUP); `None` without TLS.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        let live = self.rustls.clone()?;
        Some(TlsReloader::new(self.shared.config.clone(), live))
    }

    /// The bound client address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client.local_addr().unwrap_or(self.shared.config.listen)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.shared.config.admin_listen)
    }

    /// The bound STUN (UDP) address.
    pub fn stun_addr(&self) -> SocketAddr {
        self.stun.local_addr().unwrap_or(self.shared.config.stun_listen)
    }

    /// The TLS identity, unless plaintext.
    pub fn tls(&self) -> Option<&TlsIdentity> {
        self.tls.as_ref()
    }

    /// The URL clients use.
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}", self.client_addr())
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self { shared, client, admin, stun, tls: _, rustls, lock } = self;
        let client_addr = client.local_addr();
        let mut app = Router::new().route(WS_PATH, get(ws_upgrade));
        if shared.config.web {
            // Every other path of the client address: the web client (same origin as /v1/ws).
            app = crate::web::WebApp::compiled(rustls.is_some()).mount(app);
        }
        let app = app.with_state(shared.clone());
        let handle = axum_server::Handle::new();
        let make = app.into_make_service_with_connect_info::<SocketAddr>();
        let handshake = Duration::from_secs(shared.config.limits.handshake_timeout_secs);
        let trusted = shared.config.trusted_proxies.clone();
        let server = match rustls {
            Some(live) => {
                let tls = RustlsAcceptor::new(live)
                    .handshake_timeout(handshake)
                    .acceptor(NoDelayAcceptor::new());
                let l = &shared.config.limits;
                let limited = crate::accept::HandshakeLimit::new(
                    crate::accept::ExportBinding(tls),
                    l.max_tls_handshakes,
                    l.max_tls_handshakes_per_source,
                );
                let acceptor = ProxyProtocol::new(limited, trusted.clone(), handshake);
                let server = axum_server::from_tcp(client)?
                    .acceptor(acceptor)
                    .first_request_timeout(handshake)
                    .handle(handle.clone());
                tokio::spawn(async move { server.serve(make).await })
            }
            None => {
                let acceptor = ProxyProtocol::new(NoDelayAcceptor::new(), trusted, handshake);
                let server = axum_server::from_tcp(client)?
                    .acceptor(acceptor)
                    .first_request_timeout(handshake)
                    .handle(handle.clone());
                tokio::spawn(async move { server.serve(make).await })
            }
        };

        let admin_app = Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_page))
            .with_state(shared.clone());
        let admin_listener = tokio::net::TcpListener::from_std(admin)?;
        // Also in the log (journald, a log file): stdout may be gone.
        if let (Ok(client), Ok(admin)) = (client_addr, admin_listener.local_addr()) {
            info!(%client, %admin, "serving");
        }
        let admin_task = tokio::spawn(async move { axum::serve(admin_listener, admin_app).await });

        let (stun_stop, stun_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut stun_task = tokio::spawn(stun.run(async move {
            let _ = stun_stopped.await;
        }));
        let timers = tokio::spawn(timer_loop(shared.clone()));
        let publisher = shared
            .take_bus_queue()
            .map(|queue| tokio::spawn(crate::cluster::publish_loop(shared.bus.clone(), queue)));
        let receiver = shared
            .bus
            .events()
            .map(|events| tokio::spawn(crate::cluster::receive_loop(shared.clone(), events)));
        let retention = tokio::spawn(retention_loop(shared.clone()));
        let (missed_stop, missed_stopped) = tokio::sync::oneshot::channel();
        let missed_calls = tokio::spawn(shared.clone().record_missed_calls(missed_stopped));

        tokio::select! {
            () = shutdown => info!("shutting down"),
            result = server => {
                result.context("client server task")?.context("client server failed")?;
            }
            // Its loop ends only at shutdown, so this is a bug (a panic): exit with an error so
            // the service manager restarts the supernode, rather than serve without STUN.
            result = &mut stun_task => {
                let why = result.err().map_or("it returned".to_owned(), |e| e.to_string());
                anyhow::bail!("the STUN responder stopped unexpectedly ({why})");
            }
        }

        // Stop accepting, move the clients elsewhere a share at a time, wait briefly for them to
        // go, flush storage.
        let drain = Duration::from_secs(shared.config.limits.drain_secs);
        handle.graceful_shutdown(Some(drain + Duration::from_secs(3)));
        drain_clients(&shared, drain).await;
        shared.with_hub(|h| h.close_all(EndReason::Shutdown));
        let deadline = Instant::now() + Duration::from_secs(5);
        while shared.connection_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stun_stop.send(());
        let _ = stun_task.await;
        timers.abort();
        retention.abort();
        // Missed calls already queued are written before storage closes.
        let _ = missed_stop.send(());
        let _ = missed_calls.await;
        admin_task.abort();
        for task in [publisher, receiver].into_iter().flatten() {
            task.abort();
        }
        shared.bus.close().await;
        shared.store.close().await;
        drop(lock);
        info!("shutdown complete");
        Ok(())
    }
}

/// What tungstenite reads at once, and its read buffer's first size.
const WS_READ_BUFFER: usize = 256;

async fn ws_upgrade(
    ws: WebSocketUpgrade,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    exporter: Option<Extension<crate::accept::TlsExporter>>,
    State(shared): State<Arc<Shared>>,
) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // Small, because tungstenite keeps its read buffer for the connection's life: it grows
        // to the largest frame read (a login, a message) and 4 KiB would be most of an idle
        // connection's memory. Reads of a large frame take more, cheaper calls.
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME_BYTES * 4)
        .on_upgrade(move |socket| {
            // Plain WebSocket (loopback tests, a proxy in front) has no TLS exporter.
            let exporter = exporter.and_then(|Extension(e)| e.0);
            crate::connection::serve(shared, socket, peer, exporter)
        })
        .into_response()
}

/// Health of the supernode and of each engine it depends on: `status` is `ok`, or `degraded`
/// while the database cannot be reached or does not take writes, or the bus cannot be reached
/// (answered `503`, so a load balancer sends new clients elsewhere).
async fn healthz(State(shared): State<Arc<Shared>>) -> (StatusCode, Json<serde_json::Value>) {
    let (connections, online_users) = shared.counts();
    let started = Instant::now();
    let store_error = check_store(&*shared.store).await.err();
    let store_ms = started.elapsed().as_secs_f64() * 1000.0;
    let bus = shared.bus.health();
    let clustered = shared.config.cluster.nats_url.is_some();
    let ok = store_error.is_none() && (bus.connected || !clustered);
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    metrics::gauge!(m::DIRECTORY_USERS).set(bus.watched_users as f64);
    (
        code,
        Json(serde_json::json!({
            "status": if ok { "ok" } else { "degraded" },
            "node_id": shared.config.cluster.node_id,
            "connections": connections,
            "online_users": online_users,
            "store": {
                "ok": store_error.is_none(),
                "backend": if shared.config.cluster.database_url.is_some() { "postgres" } else { "sqlite" },
                "latency_ms": store_ms,
                "error": store_error,
            },
            "bus": {
                "ok": bus.connected,
                "backend": if clustered { "nats" } else { "local" },
                "connected": bus.connected,
                "live_nodes": bus.live_nodes,
                "watched_users": bus.watched_users,
                "error": bus.error,
            },
        })),
    )
}

async fn metrics_page(State(shared): State<Arc<Shared>>) -> String {
    let (connections, online_users) = shared.counts();
    metrics::gauge!(m::CONNECTIONS).set(connections as f64);
    metrics::gauge!(m::ONLINE_USERS).set(online_users as f64);
    metrics::gauge!(m::CALLS).set(shared.with_hub(|h| h.call_count()) as f64);
    let bus = shared.bus.health();
    metrics::gauge!(m::DIRECTORY_USERS).set(bus.watched_users as f64);
    metrics::gauge!(m::LIVE_NODES).set(bus.live_nodes as f64);
    // The database's round trip now, as each scrape sees it.
    let started = Instant::now();
    let up = check_store(&*shared.store).await.is_ok();
    metrics::gauge!(m::STORE_PING_SECONDS).set(started.elapsed().as_secs_f64());
    metrics::gauge!(m::STORE_UP).set(if up { 1.0 } else { 0.0 });
    metrics::gauge!(m::BUS_UP).set(if bus.connected { 1.0 } else { 0.0 });
    let (subjects, remote) = shared.with_hub(|h| h.presence_table_sizes());
    metrics::gauge!(m::PRESENCE_SUBJECTS).set(subjects as f64);
    metrics::gauge!(m::PRESENCE_REMOTE).set(remote as f64);
    let mut page = prometheus().render();
    page.push_str(&crate::process_metrics::render());
    page
}

/// Steps in which a stopping supernode closes its connections.
const DRAIN_STEPS: u32 = 20;

/// Closes the connections a share at a time over `drain`, each told `shutdown` so that it
/// reconnects to another supernode of the network: a supernode taken down for maintenance does
/// not send all its users to the others in the same second.
async fn drain_clients(shared: &Shared, drain: Duration) {
    let all = shared.with_hub(|h| h.connection_ids());
    if all.is_empty() {
        return;
    }
    info!(connections = all.len(), ?drain, "draining clients to other supernodes");
    let per_step = all.len().div_ceil(DRAIN_STEPS as usize);
    for (i, batch) in all.chunks(per_step).enumerate() {
        if i > 0 {
            tokio::time::sleep(drain / DRAIN_STEPS).await;
        }
        shared.with_hub(|h| {
            for conn in batch {
                h.close(*conn, EndReason::Shutdown);
            }
        });
    }
}

/// Drives the hub's timers (heartbeats, login deadlines).
async fn timer_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.with_hub(|h| h.handle_timeout(Instant::now()));
    }
}

/// Hourly (and at start): deletes messages and missed calls older than the retention period,
/// and sessions whose token expired.
///
/// Each purge deletes a batch of rows at a time, with a pause between batches, so that a large
/// backlog (the first run after an upgrade, or after a long stop) never holds the database's
/// only writer for long: sends and logins get their turn in between.
async fn retention_loop(shared: Arc<Shared>) {
    /// Rows one purge statement deletes at most.
    const BATCH: u32 = 1000;
    /// The pause between two batches.
    const PAUSE: Duration = Duration::from_millis(20);

    /// Runs `purge` (one batch) until a batch comes back short; logs what it deleted.
    async fn in_batches<F, Fut>(what: &str, mut purge: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = peerline_store::StoreResult<u64>>,
    {
        let mut deleted = 0;
        loop {
            match purge().await {
                Ok(n) => {
                    deleted += n;
                    if n < u64::from(BATCH) {
                        break;
                    }
                }
                Err(err) => {
                    warn!(error = %err, deleted, "purging {what} failed; trying again next hour");
                    return;
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
        if deleted > 0 {
            info!(deleted, "purged {what}");
        }
    }

    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let now = now_ms();
        let keep_ms = i64::from(shared.config.messages.retention_days) * 86_400_000;
        let cutoff = now - keep_ms;
        let store = &shared.store;
        in_batches("messages past retention", || store.purge_messages_before(cutoff, BATCH)).await;
        // Missed calls are kept as long as messages: both are the record of a conversation.
        in_batches("missed calls past retention", || {
            store.purge_missed_calls_before(cutoff, BATCH)
        })
        .await;
        in_batches("call log past retention", || store.purge_call_log_before(cutoff, BATCH)).await;
        in_batches("expired sessions", || store.purge_expired_sessions(now, BATCH)).await;
    }
}
