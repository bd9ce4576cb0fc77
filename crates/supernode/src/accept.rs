//! The first gate of a client connection, before TLS: how many TLS handshakes may run at once,
//! in all and per source. A handshake costs the supernode a key exchange and a certificate
//! signature, and one that is never finished holds its slot until the handshake timeout; without
//! a bound per source, one host opening connections as fast as it can would take every slot and
//! keep everybody else from connecting. A connection over a bound is closed at once (the client
//! retries with backoff).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum_server::accept::Accept;
use futures_util::future::BoxFuture;
use peerline_supernode_core::Source;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::metrics as m;
use crate::proxy::{WithClientAddr, WithExtension};

/// Wraps the TLS acceptor with the handshake bounds.
#[derive(Clone)]
pub struct HandshakeLimit<A> {
    inner: A,
    all: Arc<Semaphore>,
    per_source: usize,
    running: Arc<Mutex<HashMap<Source, usize>>>,
}

impl<A> HandshakeLimit<A> {
    /// At most `all` handshakes at once, `per_source` of them from one source (an IPv4 address
    /// or an IPv6 /64).
    pub fn new(inner: A, all: usize, per_source: usize) -> Self {
        Self {
            inner,
            all: Arc::new(Semaphore::new(all)),
            per_source,
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// One source's running handshake, counted until dropped.
struct SourceSlot {
    running: Arc<Mutex<HashMap<Source, usize>>>,
    source: Source,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = running.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.source);
            }
        }
    }
}

impl<A> HandshakeLimit<A> {
    fn source_slot(&self, ip: IpAddr) -> Option<SourceSlot> {
        let source = Source::from(ip);
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let n = running.entry(source).or_insert(0);
        if *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(SourceSlot { running: self.running.clone(), source })
    }
}

fn refused(why: &'static str) -> io::Error {
    metrics::counter!(m::HANDSHAKES_REFUSED, "why" => why).increment(1);
    io::Error::other(why)
}

impl<A, S> Accept<TcpStream, WithClientAddr<S>> for HandshakeLimit<A>
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

    fn accept(&self, stream: TcpStream, service: WithClientAddr<S>) -> Self::Future {
        // The address a trusted proxy reported, if one stands in front.
        let source = self.source_slot(service.client_ip());
        let permit = self.all.clone().try_acquire_owned();
        // Dropping the stream unpolled closes the connection.
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            let Some(_source) = source else {
                return Err(refused("per_source"));
            };
            let Ok(_permit) = permit else {
                return Err(refused("all"));
            };
            handshake.await
        })
    }
}

/// The connection's TLS exporter (RFC 9266 `tls-exporter`), which a login signature may cover:
/// `None` when the TLS library could not export one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsExporter(pub Option<[u8; 32]>);

/// Wraps the TLS acceptor: after the handshake, reads the connection's exporter and hands it to
/// the requests as the [`TlsExporter`] extension.
#[derive(Debug, Clone)]
pub struct ExportBinding<A>(pub A);

impl<A, S> Accept<TcpStream, S> for ExportBinding<A>
where
    A: Accept<TcpStream, S, Stream = tokio_rustls::server::TlsStream<TcpStream>>,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;
    type Service = WithExtension<A::Service, TlsExporter>;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let handshake = self.0.accept(stream, service);
        Box::pin(async move {
            let (tls, service) = handshake.await?;
            let exporter = tls
                .get_ref()
                .1
                .export_keying_material([0u8; 32], peerline_wire::TLS_EXPORTER_LABEL, None)
                .ok();
            Ok((tls, WithExtension::new(service, TlsExporter(exporter))))
        })
    }
}
