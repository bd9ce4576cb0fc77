//! One client connection, served by one task: it decodes frames and runs requests one at a
//! time, and writes what the connection's [`Outbox`] holds (answers and events) while it waits
//! for the next frame or for a request to finish. Either side ending tears the connection down
//! and tells the hub.
//!
//! An idle connection is a few small allocations: the task (whose state is kept small: a
//! running request is boxed, and its tracing span lives only while it runs), an empty outbox,
//! and the TLS and WebSocket state of the libraries.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use peerline_supernode_core::ConnId;
use peerline_wire::{
    EndReason, ErrorBody, ErrorCode, Event, Request, ServerFrame, decode_client_frame, encode,
};
use tracing::{Instrument, debug, info_span};

use crate::metrics as m;
use crate::session::Session;
use crate::state::{ConnHandle, Outbound, Outbox, Shared};

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
    let outbox = Outbox::new(shared.config.limits.send_queue_frames);
    let conn = match shared.register(ConnHandle::new(outbox.clone()), peer.ip(), Instant::now()) {
        Ok(conn) => conn,
        Err(why) => return refuse(socket, why).await,
    };
    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
    debug!(conn = conn.0, %peer, "connected");
    let (mut sink, mut stream) = socket.split();
    let write_timeout = Duration::from_secs(shared.config.limits.write_timeout_secs);
    // The writer is part of this task, polled next to the reads and the running request: one
    // task per connection instead of two.
    let mut writer = Writer {
        future: std::pin::pin!(write_loop(&mut sink, &outbox, write_timeout)),
        done: false,
    };
    let we_closed = {
        let mut session = Session::new(shared.clone(), conn, peer, outbox.clone());
        session.tls_exporter = tls_exporter;
        read_loop(&shared, &mut session, &mut stream, &outbox, &mut writer).await
    };
    // Presence and counts change now, not after the drain below.
    if let Some(user) = shared.unregister(conn)
        && let Err(e) = shared.bus.unwatch(user).await
    {
        debug!(conn = conn.0, error = %e, "unwatching on the bus failed");
    }
    if we_closed {
        drain(&mut stream, &mut writer).await;
    }
    outbox.kill();
    debug!(conn = conn.0, "disconnected");
}

/// The connection's writer, polled by the reading side; done once it returned (the goodbye was
/// sent, a write failed or timed out, or the connection was killed).
struct Writer<'a> {
    future: Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>,
    done: bool,
}

impl Writer<'_> {
    /// Writes until the writer returns; returns at once if it already did.
    async fn run(&mut self) {
        if !self.done {
            self.future.as_mut().await;
            self.done = true;
        }
    }
}

/// Waits for `queued` (an answer waiting for room in the outbox) while writing, since only the
/// writer makes room; `false` if the connection ended first.
async fn while_writing(writer: &mut Writer<'_>, queued: impl Future<Output = bool>) -> bool {
    tokio::select! {
        biased;
        ok = queued => ok,
        () = writer.run() => false,
    }
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
    session: &mut Session,
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
    writer: &mut Writer<'_>,
) -> bool {
    let conn = session.conn;
    // A frame read while a request was running, to handle next.
    let mut stashed: Option<Result<Message, axum::Error>> = None;
    loop {
        let message = match stashed.take() {
            Some(m) => Some(m),
            None => tokio::select! {
                biased;
                // The writer returns when the connection must end.
                () = writer.run() => break,
                m = stream.next() => m,
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
                if !while_writing(writer, session.reply_error(None, body)).await {
                    break;
                }
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return false,
            Some(Err(err)) => {
                if is_too_big(&err) {
                    // Boxed: a rare path whose timers need not sit in every connection's state.
                    Box::pin(too_big(shared, conn, outbox, writer)).await;
                    return true;
                }
                debug!(conn = conn.0, error = %err, "read failed");
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
                let body = err.to_error_body();
                if !while_writing(writer, session.reply_error(err.request_id(), body)).await {
                    break;
                }
                continue;
            }
        };
        drop(bytes);
        if let Err(body) = admitted {
            if !while_writing(writer, session.reply_error(Some(frame.id), body)).await {
                break;
            }
            continue;
        }
        metrics::counter!(m::REQUESTS).increment(1);
        let (kind, started) = (frame.request.kind(), Instant::now());
        let id = frame.id;
        let logout = matches!(frame.request, Request::Logout);
        // The connection's span exists while it has work, not while it idles (a span costs
        // the log registry a few hundred bytes).
        let span = info_span!("conn", id = conn.0);
        // While the request runs (it may wait for a password hash slot), the socket is still
        // watched and the outbox written: a client that hangs up, or a hub that closes the
        // connection, releases what the request waits for instead of having it run for nobody.
        let (closed_tx, closed_rx) = tokio::sync::watch::channel(false);
        session.closed = Some(closed_rx);
        let (result, gone) = {
            // Boxed: a request's state (the largest of all handlers') exists only while it runs,
            // not in every idle connection's task.
            let mut handling = Box::pin(session.handle(frame.request).instrument(span.clone()));
            let mut gone = None;
            let result = loop {
                tokio::select! {
                    biased;
                    r = &mut handling => break r,
                    () = writer.run(), if gone.is_none() => {
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
        session.closed = None;
        drop(closed_tx);
        if let Some(we_closed) = gone {
            return we_closed;
        }
        metrics::histogram!(m::REQUEST_SECONDS, "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        let _entered = span.enter();
        log_throttled(kind, &result);
        drop(_entered);
        let (sent, end) = match result {
            Ok(reply) => {
                let end = logout.then_some(EndReason::LoggedOut);
                let reply = ServerFrame::Ok { id, result: reply };
                (while_writing(writer, session.send(reply)).await, end)
            }
            Err(body) => {
                let end =
                    (body.code == ErrorCode::HelloRequired).then_some(EndReason::ProtocolViolation);
                (while_writing(writer, session.reply_error(Some(id), body)).await, end)
            }
        };
        if !sent || !after_reply(session, writer, span).await {
            break;
        }
        if let Some(reason) = end {
            shared.with_hub(|h| h.close(conn, reason));
        }
    }
    true
}

/// Runs what follows a reply (after login: the presence snapshot and stored messages), writing
/// meanwhile: the session may wait for room in the outbox, which only the writer makes.
async fn after_reply(session: &mut Session, writer: &mut Writer<'_>, span: tracing::Span) -> bool {
    if !session.has_after_reply() {
        return true;
    }
    let pushing = Box::pin(session.after_reply().instrument(span));
    while_writing(writer, pushing).await
}

/// Answers a frame over the size limit: the error, then a 1009 close, then a short grace
/// before the connection is dropped.
async fn too_big(shared: &Shared, conn: ConnId, outbox: &Outbox, writer: &mut Writer<'_>) {
    metrics::counter!(m::BAD_FRAMES).increment(1);
    let body = ErrorBody::new(ErrorCode::FrameTooLarge);
    let frame = encode(&ServerFrame::Error { id: None, error: body });
    let _ = outbox.try_push(Outbound::Frame(frame.into()));
    let _ = outbox.try_push(Outbound::CloseTooBig);
    shared.with_hub(|h| h.mark_closing(conn));
    // The writer sends the error and a 1009 close, then returns.
    let write_timeout = Duration::from_secs(shared.config.limits.write_timeout_secs);
    let _ = tokio::time::timeout(write_timeout, writer.run()).await;
    // The rest of the big frame is still arriving and cannot be read through the WebSocket any
    // more; closing now would reset the connection under the client before it reads the error.
    // Give it a moment to finish sending.
    tokio::time::sleep(TOO_BIG_GRACE).await;
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
/// frames already sent are not destroyed by a TCP reset; the writer finishes meanwhile.
async fn drain(stream: &mut SplitStream<WebSocket>, writer: &mut Writer<'_>) {
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        loop {
            let writing = !writer.done;
            tokio::select! {
                () = writer.run(), if writing => {}
                message = stream.next() => match message {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
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

/// Writes what the outbox holds until the connection must end: a goodbye was sent, a write
/// failed or took longer than `write_timeout`, or the connection was killed. Marks the outbox
/// dead when it returns, so that nothing more is queued for nobody.
async fn write_loop(
    sink: &mut SplitSink<WebSocket, Message>,
    outbox: &Outbox,
    write_timeout: Duration,
) {
    while let Some(out) = outbox.next().await {
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
    outbox.kill();
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}
