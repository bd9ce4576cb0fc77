//! One client connection: a reader that decodes frames and runs requests one at a time, and a
//! writer that drains the bounded send queue. Either side ending tears both down and tells the hub.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use peerline_supernode_core::ConnId;
use peerline_wire::{
    EndReason, ErrorBody, ErrorCode, Event, Request, ServerFrame, decode_client_frame, encode,
};
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, debug, info_span};

use crate::metrics as m;
use crate::session::Session;
use crate::state::{ConnHandle, Outbound, Shared};

/// WebSocket close code for "message too big" (RFC 6455 §7.4.1).
const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code for "going away".
const CLOSE_GOING_AWAY: u16 = 1001;

/// Serves one upgraded WebSocket until it closes.
pub async fn serve(
    shared: Arc<Shared>,
    socket: WebSocket,
    peer: SocketAddr,
    tls_exporter: Option<[u8; 32]>,
) {
    let (tx, rx) = mpsc::channel(shared.config.limits.send_queue_frames);
    let kill = Arc::new(Notify::new());
    let handle = ConnHandle::new(tx.clone(), kill.clone());
    let conn = match shared.register(handle, peer.ip(), Instant::now()) {
        Ok(conn) => conn,
        Err(why) => return refuse(socket, why).await,
    };
    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
    let span = info_span!("conn", id = conn.0);
    async move {
        debug!(%peer, "connected");
        let (sink, stream) = socket.split();
        let write_timeout = Duration::from_secs(shared.config.limits.write_timeout_secs);
        let writer = tokio::spawn(write_loop(sink, rx, kill.clone(), write_timeout));
        let mut stream = stream;
        let we_closed = read_loop(&shared, conn, peer, tls_exporter, &mut stream, tx, &kill).await;
        // Presence and counts change now, not after the drain below.
        if let Some(user) = shared.unregister(conn)
            && let Err(e) = shared.bus.unwatch(user).await
        {
            debug!(error = %e, "unwatching on the bus failed");
        }
        if we_closed {
            drain(&mut stream).await;
        }
        writer.abort();
        debug!("disconnected");
    }
    .instrument(span)
    .await;
}

/// Turns a connection away before it is registered: come back later, each client at a
/// different time, or go to another supernode.
async fn refuse(mut socket: WebSocket, why: &'static str) {
    metrics::counter!(m::CONNECTIONS_REFUSED).increment(1);
    let mut error = ErrorBody::with_message(ErrorCode::ShuttingDown, why);
    error.retry_after_secs = Some(5 + rand::random::<u64>() % 10);
    let frame = encode(&ServerFrame::Error { id: None, error });
    let _ = socket.send(Message::Text(frame.into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

/// How long a closing connection is read (and discarded) while waiting for the client's Close,
/// so that the goodbye frames reach it instead of being cut off by a reset.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// How long a connection that sent an oversized frame is kept open after the error was sent.
const TOO_BIG_GRACE: Duration = Duration::from_millis(500);

/// Runs requests until the connection ends. Returns `true` if this side decided to close (the
/// client's Close has not been seen yet), `false` if the client closed or the socket failed.
async fn read_loop(
    shared: &Arc<Shared>,
    conn: ConnId,
    peer: SocketAddr,
    tls_exporter: Option<[u8; 32]>,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    tx: mpsc::Sender<Outbound>,
    kill: &Notify,
) -> bool {
    let (closed_tx, closed_rx) = tokio::sync::watch::channel(false);
    let mut session = Session::new(shared.clone(), conn, peer, tx.clone(), closed_rx);
    session.tls_exporter = tls_exporter;
    // A frame read while a request was running, to handle next.
    let mut stashed: Option<Result<Message, axum::Error>> = None;
    loop {
        let message = match stashed.take() {
            Some(m) => Some(m),
            None => tokio::select! {
                m = stream.next() => m,
                () = kill.notified() => break,
            },
        };
        let bytes = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                if shared.with_hub(|h| h.is_closing(conn)) {
                    continue;
                }
                shared.with_hub(|h| h.violation(conn));
                let body = ErrorBody::with_message(
                    ErrorCode::BadRequest,
                    "binary frames are not part of protocol version 1; send JSON text",
                );
                if !session.reply_error(None, body).await {
                    break;
                }
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return false,
            Some(Err(err)) => {
                if is_too_big(&err) {
                    metrics::counter!(m::BAD_FRAMES).increment(1);
                    let body = ErrorBody::new(ErrorCode::FrameTooLarge);
                    let frame = encode(&ServerFrame::Error { id: None, error: body });
                    let _ = tx.try_send(Outbound::Frame(frame.into()));
                    let _ = tx.try_send(Outbound::CloseTooBig);
                    shared.with_hub(|h| h.mark_closing(conn));
                    // The writer sends the error and a 1009 close, then wakes us.
                    let write_timeout =
                        Duration::from_secs(shared.config.limits.write_timeout_secs);
                    let _ = tokio::time::timeout(write_timeout, kill.notified()).await;
                    // The rest of the big frame is still arriving and cannot be read through the
                    // WebSocket any more; closing now would reset the connection under the client
                    // before it reads the error. Give it a moment to finish sending.
                    tokio::time::sleep(TOO_BIG_GRACE).await;
                    return true;
                }
                debug!(error = %err, "read failed");
                return false;
            }
        };
        let (admitted, closing) =
            shared.with_hub(|h| (h.admit(conn, Instant::now()), h.is_closing(conn)));
        if closing {
            // The goodbye is queued; answering more would only delay it.
            continue;
        }
        let frame = match decode_client_frame(bytes.as_bytes()) {
            Ok(frame) => frame,
            Err(err) => {
                metrics::counter!(m::BAD_FRAMES).increment(1);
                shared.with_hub(|h| h.violation(conn));
                if !session.reply_error(err.request_id(), err.to_error_body()).await {
                    break;
                }
                continue;
            }
        };
        if let Err(body) = admitted {
            if !session.reply_error(Some(frame.id), body).await {
                break;
            }
            continue;
        }
        metrics::counter!(m::REQUESTS).increment(1);
        let (kind, started) = (frame.request.kind(), Instant::now());
        let id = frame.id;
        let logout = matches!(frame.request, Request::Logout);
        // While the request runs (it may wait for a password hash slot), the socket is still
        // watched: a client that hangs up, or a hub that closes the connection, releases what
        // the request waits for instead of having it run for nobody.
        let (result, gone) = {
            let mut handling = std::pin::pin!(session.handle(frame.request));
            let mut gone = None;
            let result = loop {
                tokio::select! {
                    biased;
                    r = &mut handling => break r,
                    () = kill.notified(), if gone.is_none() => {
                        let _ = closed_tx.send(true);
                        gone = Some(true);
                    }
                    m = stream.next(), if gone.is_none() && stashed.is_none() => match m {
                        Some(Ok(Message::Close(_)) | Err(_)) | None => {
                            let _ = closed_tx.send(true);
                            gone = Some(false);
                        }
                        Some(other) => stashed = Some(other),
                    },
                }
            };
            (result, gone)
        };
        if let Some(we_closed) = gone {
            return we_closed;
        }
        metrics::histogram!(m::REQUEST_SECONDS, "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        log_throttled(kind, &result);
        let (sent, end) = match result {
            Ok(reply) => {
                let end = logout.then_some(EndReason::LoggedOut);
                (session.send(ServerFrame::Ok { id, result: reply }).await, end)
            }
            Err(body) => {
                let end =
                    (body.code == ErrorCode::HelloRequired).then_some(EndReason::ProtocolViolation);
                (session.reply_error(Some(id), body).await, end)
            }
        };
        if !sent || !session.after_reply().await {
            break;
        }
        if let Some(reason) = end {
            shared.with_hub(|h| h.close(conn, reason));
        }
    }
    true
}

/// Says at info level when a login or a registration was turned away by a limit (the operator
/// tuning limits wants to see it); other requests' refusals stay at debug, where a flooding
/// client cannot fill the log.
fn log_throttled<T>(kind: &'static str, result: &Result<T, ErrorBody>) {
    let Err(body) = result else { return };
    if !matches!(body.code, ErrorCode::RateLimited | ErrorCode::LoginThrottled) {
        return;
    }
    let retry_after_secs = body.retry_after_secs;
    if matches!(kind, "login" | "register") {
        tracing::info!(kind, code = ?body.code, ?retry_after_secs, "throttled");
    } else {
        debug!(kind, code = ?body.code, ?retry_after_secs, "throttled");
    }
}

/// Reads and discards until the client answers our Close (or a short deadline), so that the
/// frames already sent are not destroyed by a TCP reset.
async fn drain(stream: &mut futures_util::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn is_too_big(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Message too long")
        || text.contains("Frame too long")
        || text.contains("too long")
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    kill: Arc<Notify>,
    write_timeout: Duration,
) {
    while let Some(out) = rx.recv().await {
        let (message, last) = match out {
            Outbound::CloseTooBig => (close_frame(CLOSE_TOO_BIG, "frame too large"), true),
            Outbound::Frame(text) => (Message::Text(text), false),
            Outbound::End(reason) => {
                let frame = encode(&ServerFrame::Event { event: Event::SessionEnded { reason } });
                let _ = tokio::time::timeout(write_timeout, sink.send(Message::Text(frame.into())))
                    .await;
                (close_frame(CLOSE_GOING_AWAY, "session ended"), true)
            }
        };
        match tokio::time::timeout(write_timeout, sink.send(message)).await {
            Ok(Ok(())) if !last => {}
            _ => break,
        }
    }
    kill.notify_one();
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}
