//! The other side of the comparison: a NATS client holding one TLS WebSocket connection to a
//! nats-server, as `hold` holds a Peerline user. Its "login" is the NATS handshake (the server's
//! `INFO`, the client's `CONNECT` with an optional auth token, then `PING` until `PONG`), its
//! heartbeat a `PING` every heartbeat interval, and it answers the server's own `PING`s. Only
//! enough of the NATS text protocol for that: no subscriptions, no messages.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::dial::{Failure, Ws};

/// The longest protocol line kept while waiting for its end: NATS's `INFO` is a few hundred bytes.
const MAX_LINE: usize = 64 * 1024;

/// One held NATS connection.
pub struct NatsConnection {
    ws: Ws,
    /// Bytes received but not yet a whole line.
    pending: Vec<u8>,
}

/// What the server sent, one protocol line at a time.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Info,
    Ping,
    Pong,
    Ok,
    Err(String),
    Other(String),
}

fn parse_line(line: &[u8]) -> Line {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let verb = text.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    match verb.as_str() {
        "INFO" => Line::Info,
        "PING" => Line::Ping,
        "PONG" => Line::Pong,
        "+OK" => Line::Ok,
        "-ERR" => Line::Err(text.get(4..).unwrap_or("").trim().to_owned()),
        _ => Line::Other(text.chars().take(80).collect()),
    }
}

/// The `CONNECT` line: no echo, no verbose `+OK`s, the token if the server wants one.
fn connect_line(token: Option<&str>) -> String {
    let options = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "protocol": 1,
        "echo": false,
        "lang": "rust",
        "name": "peerline-loadgen",
        "auth_token": token,
    });
    format!("CONNECT {options}\r\nPING\r\n")
}

impl NatsConnection {
    /// Runs the handshake on an open WebSocket: waits for `INFO`, sends `CONNECT` and `PING`,
    /// and returns once the server answered `PONG` (the server has accepted the connection and
    /// its credentials then), within `timeout`.
    pub async fn handshake(
        ws: Ws,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let mut conn = Self { ws, pending: Vec::new() };
        let deadline = Instant::now() + timeout;
        let in_time =
            |what: &str| Failure::new("timeout", format!("no {what} from nats-server in time"));
        match tokio::time::timeout_at(deadline, conn.next_line()).await {
            Err(_) => return Err(in_time("INFO")),
            Ok(Ok(Line::Info)) => {}
            Ok(Ok(other)) => {
                return Err(Failure::new("protocol", format!("expected INFO, got {other:?}")));
            }
            Ok(Err(e)) => return Err(e),
        }
        conn.send(connect_line(token)).await?;
        loop {
            match tokio::time::timeout_at(deadline, conn.next_line()).await {
                Err(_) => return Err(in_time("PONG")),
                Ok(Ok(Line::Pong)) => return Ok(conn),
                Ok(Ok(Line::Err(e))) => return Err(Failure::new("nats:err", e)),
                Ok(Ok(Line::Ping)) => conn.send("PONG\r\n".to_owned()).await?,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    async fn send(&mut self, text: String) -> Result<(), Failure> {
        self.ws
            .send(Message::Binary(text.into_bytes().into()))
            .await
            .map_err(|e| Failure::new("websocket", e))
    }

    /// Sends the heartbeat `PING`.
    pub async fn ping(&mut self) -> Result<(), Failure> {
        self.send("PING\r\n".to_owned()).await
    }

    /// The next whole protocol line, reading frames as needed.
    async fn next_line(&mut self) -> Result<Line, Failure> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(parse_line(&line));
            }
            if self.pending.len() > MAX_LINE {
                return Err(Failure::new("protocol", "a line from nats-server over 64 KiB"));
            }
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => self.pending.extend_from_slice(&b),
                Some(Ok(Message::Text(t))) => self.pending.extend_from_slice(t.as_bytes()),
                Some(Ok(Message::Close(frame))) => {
                    return Err(Failure::new(
                        "closed",
                        format!("closed by nats-server: {frame:?}"),
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Failure::new("websocket", e)),
                None => return Err(Failure::new("closed", "connection closed")),
            }
        }
    }

    /// Reads until `deadline`, answering the server's `PING`s; an error ends the connection.
    pub async fn idle_until(&mut self, deadline: Instant) -> Result<(), Failure> {
        loop {
            match tokio::time::timeout_at(deadline, self.next_line()).await {
                Err(_) => return Ok(()),
                Ok(Ok(Line::Ping)) => self.send("PONG\r\n".to_owned()).await?,
                Ok(Ok(Line::Err(e))) => return Err(Failure::new("nats:err", e)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_recognised_whatever_their_case() {
        assert_eq!(parse_line(b"INFO {\"server_id\":\"x\"}\r\n"), Line::Info);
        assert_eq!(parse_line(b"ping\r\n"), Line::Ping);
        assert_eq!(parse_line(b"PONG\r\n"), Line::Pong);
        assert_eq!(parse_line(b"+OK\r\n"), Line::Ok);
        assert_eq!(
            parse_line(b"-ERR 'Authorization Violation'\r\n"),
            Line::Err("'Authorization Violation'".to_owned())
        );
        assert!(matches!(parse_line(b"MSG a 1 0\r\n"), Line::Other(_)));
    }

    #[test]
    fn connect_carries_the_token_only_when_given() {
        let without = connect_line(None);
        assert!(without.starts_with("CONNECT {") && without.ends_with("}\r\nPING\r\n"));
        assert!(without.contains("\"auth_token\":null"));
        assert!(connect_line(Some("s3cret")).contains("\"auth_token\":\"s3cret\""));
    }
}
