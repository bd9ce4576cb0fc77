//! Who a client really is when a load balancer or TLS-passthrough proxy stands in front: the
//! PROXY protocol (HAProxy, versions 1 and 2), accepted only from the addresses the operator
//! lists in `trusted_proxies`. Every per-source limit (login throttling, hash slots, pre-login
//! connections, TLS handshakes) counts the address the proxy reports, so that a proxy does not
//! make all its users one address; a connection from anywhere else is taken at its TCP address,
//! and a header it sends is not read as one (it fails the TLS handshake).
//!
//! The header is read before anything else, without reading past it (the bytes after it are
//! the client's TLS or WebSocket). A trusted proxy that sends no valid header within the
//! handshake timeout is disconnected.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use futures_util::future::BoxFuture;
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header read: a version 2 header with addresses and some TLVs (the version 1
/// text is at most 107 bytes).
const MAX_HEADER: usize = 536;

/// The first 12 bytes of a version 2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The client's address as the limits count it: the TCP peer, or what a trusted proxy reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// A per-connection service that hands something learned while accepting the connection (its
/// client's address, its TLS exporter) to every request as an extension.
#[derive(Debug, Clone)]
pub struct WithExtension<S, E> {
    inner: S,
    value: E,
}

impl<S, E> WithExtension<S, E> {
    /// `inner`, adding `value` to each request's extensions.
    pub fn new(inner: S, value: E) -> Self {
        Self { inner, value }
    }
}

/// The service of a connection whose client address is known.
pub type WithClientAddr<S> = WithExtension<S, ClientAddr>;

impl<S> WithClientAddr<S> {
    /// The client's IP address.
    pub fn client_ip(&self) -> IpAddr {
        self.value.0.ip()
    }
}

impl<S, E, B> tower_service::Service<http::Request<B>> for WithExtension<S, E>
where
    S: tower_service::Service<http::Request<B>>,
    E: Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.value.clone());
        self.inner.call(request)
    }
}

/// Reads the PROXY header of connections from trusted proxies, then hands the connection on.
#[derive(Debug, Clone)]
pub struct ProxyProtocol<A> {
    inner: A,
    trusted: Arc<[IpAddr]>,
    timeout: Duration,
}

impl<A> ProxyProtocol<A> {
    /// Trusts headers from `trusted` (none: the protocol is off), waiting at most `timeout` for
    /// one.
    pub fn new(inner: A, trusted: Vec<IpAddr>, timeout: Duration) -> Self {
        Self { inner, trusted: trusted.into(), timeout }
    }
}

impl<A, S> Accept<TcpStream, S> for ProxyProtocol<A>
where
    A: Accept<TcpStream, WithClientAddr<S>> + Clone + Send + Sync + 'static,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = BoxFuture<'static, io::Result<(A::Stream, A::Service)>>;

    fn accept(&self, mut stream: TcpStream, service: S) -> Self::Future {
        let inner = self.inner.clone();
        let trusted = self.trusted.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let peer = stream.peer_addr()?;
            let addr = if trusted.contains(&canonical(peer.ip())) {
                let header = tokio::time::timeout(timeout, read_header(&mut stream))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no PROXY header"))??;
                header.unwrap_or(peer)
            } else {
                peer
            };
            inner.accept(stream, WithExtension::new(service, ClientAddr(addr))).await
        })
    }
}

/// An IPv4-mapped IPv6 address as IPv4, so that a listed `10.0.0.5` matches a dual-stack peer.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Reads one PROXY header, exactly: the source it names, or `None` for a header without one
/// (`UNKNOWN`, or a version 2 `LOCAL` health check).
async fn read_header(stream: &mut TcpStream) -> io::Result<Option<SocketAddr>> {
    let mut buf = vec![0u8; 16];
    stream.read_exact(&mut buf).await?;
    if buf.starts_with(V2_SIGNATURE) {
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if 16 + len > MAX_HEADER {
            return Err(bad("a PROXY v2 header longer than 536 bytes"));
        }
        buf.resize(16 + len, 0);
        stream.read_exact(&mut buf[16..]).await?;
    } else if buf.starts_with(b"PROXY ") {
        // Version 1 ends at CRLF; read a byte at a time so as not to read past it.
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= 108 {
                return Err(bad("a PROXY v1 header longer than 107 bytes"));
            }
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await?;
            buf.push(byte[0]);
        }
    } else {
        return Err(bad("a trusted proxy sent no PROXY header"));
    }
    source_of(&buf)
}

fn bad(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// The source address a complete header names.
fn source_of(header: &[u8]) -> io::Result<Option<SocketAddr>> {
    let parsed = HeaderResult::parse(header);
    if parsed.is_incomplete() {
        return Err(bad("an incomplete PROXY header"));
    }
    Ok(match parsed {
        HeaderResult::V1(Ok(h)) => match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
            ppp::v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
            ppp::v1::Addresses::Unknown => None,
        },
        HeaderResult::V2(Ok(h)) => match (h.command, h.addresses) {
            (ppp::v2::Command::Local, _) => None,
            (_, ppp::v2::Addresses::IPv4(a)) => Some((a.source_address, a.source_port).into()),
            (_, ppp::v2::Addresses::IPv6(a)) => Some((a.source_address, a.source_port).into()),
            (_, ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_)) => None,
        },
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => {
            return Err(bad("a malformed PROXY header"));
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn version_1_and_2_sources_are_read() {
        let v1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 7443\r\n";
        assert_eq!(source_of(v1).unwrap(), Some("198.51.100.7:40000".parse().unwrap()));
        let v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 7443\r\n";
        assert_eq!(source_of(v1).unwrap(), Some("[2001:db8::7]:40000".parse().unwrap()));
        assert_eq!(source_of(b"PROXY UNKNOWN\r\n").unwrap(), None);
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([0x21, 0x11, 0, 12, 203, 0, 113, 9, 192, 0, 2, 1, 0x9c, 0x40, 0x1d, 0x13]);
        assert_eq!(source_of(&v2).unwrap(), Some("203.0.113.9:40000".parse().unwrap()));
        for bad in [&b"PROXY TCP4 nonsense\r\n"[..], b"PROXY TCP4 1.2.3.4\r\n"] {
            assert!(source_of(bad).is_err(), "{bad:?}");
        }
    }
}
