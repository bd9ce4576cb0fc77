//! One client connection: a reader that decodes frames and runs requests one at a time, and a
//! writer that drains the bounded send queue. Either side ending tears both down and tells the hub.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use peerline_supernode_core::ConnId;
use peerline_wire::{
    ErrorBody, ErrorCode, Event, Request, ServerFrame, decode_client_frame, encode,
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
pub async fn serve(shared: Arc<Shared>, socket: WebSocket, peer: SocketAddr) {
    let (tx, rx) = mpsc::channel(shared.config.limits.send_queue_frames);
    let kill = Arc::new(Notify::new());
    let Some(conn) =
        shared.register(ConnHandle { tx: tx.clone(), kill: kill.clone() }, Instant::now())
    else {
        metrics::counter!(m::CONNECTIONS_REFUSED).increment(1);
        let mut socket = socket;
        let frame = encode(&ServerFrame::Error {
            id: None,
            error: ErrorBody::with_message(ErrorCode::ShuttingDown, "supernode is full, try later"),
        });
        let _ = socket.send(Message::Text(frame.into())).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
    let span = info_span!("conn", id = conn.0);
    async move {
        debug!(%peer, "connected");
        let (sink, stream) = socket.split();
        let write_timeout = Duration::from_secs(shared.config.limits.write_timeout_secs);
        let writer = tokio::spawn(write_loop(sink, rx, kill.clone(), write_timeout));
        read_loop(&shared, conn, peer, stream, tx, &kill).await;
        shared.unregister(conn);
        writer.abort();
        debug!("disconnected");
    }
    .instrument(span)
    .await;
}

async fn read_loop(
    shared: &Arc<Shared>,
    conn: ConnId,
    peer: SocketAddr,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    tx: mpsc::Sender<Outbound>,
    kill: &Notify,
) {
    let mut session = Session::new(shared.clone(), conn, peer, tx.clone());
    loop {
        let message = tokio::select! {
            m = stream.next() => m,
            () = kill.notified() => return,
        };
        let bytes = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                session.reply_error(
                    None,
                    ErrorBody::with_message(
                        ErrorCode::BadRequest,
                        "binary frames are not part of protocol version 1; send JSON text",
                    ),
                );
                shared.with_hub(|h| h.violation(conn));
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return,
            Some(Err(err)) => {
                if is_too_big(&err) {
                    metrics::counter!(m::BAD_FRAMES).increment(1);
                    let body = ErrorBody::new(ErrorCode::FrameTooLarge);
                    let frame = encode(&ServerFrame::Error { id: None, error: body });
                    let _ = tx.try_send(Outbound::Frame(frame.into()));
                    let _ = tx.try_send(Outbound::CloseTooBig);
                    // Give the writer a moment to flush the error and the 1009 close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                debug!(error = %err, "read failed");
                return;
            }
        };
        let admitted = shared.with_hub(|h| h.admit(conn, Instant::now()));
        let frame = match decode_client_frame(bytes.as_bytes()) {
            Ok(frame) => frame,
            Err(err) => {
                metrics::counter!(m::BAD_FRAMES).increment(1);
                shared.with_hub(|h| h.violation(conn));
                session.reply_error(err.request_id(), err.to_error_body());
                continue;
            }
        };
        if let Err(body) = admitted {
            session.reply_error(Some(frame.id), body);
            continue;
        }
        metrics::counter!(m::REQUESTS).increment(1);
        let id = frame.id;
        let close_after = matches!(frame.request, Request::Logout);
        match session.handle(frame.request).await {
            Ok(reply) => session.send(ServerFrame::Ok { id, result: reply }),
            Err(body) => {
                let fatal = body.code == ErrorCode::HelloRequired;
                session.reply_error(Some(id), body);
                if fatal {
                    let _ = tx.try_send(Outbound::End(peerline_wire::EndReason::ProtocolViolation));
                }
            }
        }
        session.after_reply().await;
        if close_after {
            let _ = tx.try_send(Outbound::End(peerline_wire::EndReason::LoggedOut));
        }
    }
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
            Outbound::CloseTooBig => (
                Message::Close(Some(CloseFrame {
                    code: CLOSE_TOO_BIG,
                    reason: "frame too large".into(),
                })),
                true,
            ),
            Outbound::Frame(text) => (Message::Text(text), false),
            Outbound::End(reason) => {
                let frame = encode(&ServerFrame::Event { event: Event::SessionEnded { reason } });
                let _ = tokio::time::timeout(write_timeout, sink.send(Message::Text(frame.into())))
                    .await;
                (
                    Message::Close(Some(CloseFrame {
                        code: CLOSE_GOING_AWAY,
                        reason: "session ended".into(),
                    })),
                    true,
                )
            }
        };
        match tokio::time::timeout(write_timeout, sink.send(message)).await {
            Ok(Ok(())) if !last => {}
            _ => break,
        }
    }
    kill.notify_one();
}
