//! Batched UDP I/O for the driver: up to [`BATCH`] datagrams per `recvmmsg` and per `sendmmsg`
//! system call (Linux), through `nix`'s safe wrappers.
//!
//! Why: with one `recv_from` and one `send_to` per Binding request, the system-call entry and
//! exit (and, under tokio, a readiness check per packet) cost more than answering the request.
//! A batch pays them once for up to 64 packets; the receive buffers, the response buffers and the
//! kernel's message headers are allocated once and reused for every batch.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

/// Most datagrams received or sent per system call. Beyond 64 the saving per packet is small
/// and a batch holds more memory (64 × [`SLOT_LEN`] bytes for the receive side).
pub(crate) const BATCH: usize = 64;

/// Bytes per receive slot: larger than any accepted request, so that a longer datagram is seen
/// as oversize instead of being silently cut to an acceptable length.
pub(crate) const SLOT_LEN: usize = 2048;

/// The reused buffers of one socket's receive → answer → send cycle.
pub(crate) struct Batch {
    /// `BATCH` receive slots of `SLOT_LEN` bytes, back to back.
    recv_buf: Vec<u8>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    /// Length and source of each datagram of the last receive.
    received: [(usize, Option<SocketAddr>); BATCH],
    received_count: usize,
    send_headers: MultiHeaders<SockaddrStorage>,
    /// Responses queued for the next send, `queued` of them, each with its destination.
    responses: Vec<Vec<u8>>,
    destinations: [Option<SockaddrStorage>; BATCH],
    queued: usize,
}

impl Batch {
    /// Buffers for batches of [`BATCH`] datagrams; `response_capacity` bytes per response.
    pub(crate) fn new(response_capacity: usize) -> Self {
        Self {
            recv_buf: vec![0; BATCH * SLOT_LEN],
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            received: [(0, None); BATCH],
            received_count: 0,
            send_headers: MultiHeaders::preallocate(BATCH, None),
            responses: (0..BATCH).map(|_| Vec::with_capacity(response_capacity)).collect(),
            destinations: [None; BATCH],
            queued: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams: blocks (up to the socket's read timeout) for the
    /// first, then takes whatever else is already queued. Returns how many arrived.
    pub(crate) fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received_count = 0;
        let mut slots = self.recv_buf.chunks_exact_mut(SLOT_LEN);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
        let results =
            recvmmsg(fd, &mut self.recv_headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None)?;
        for (slot, message) in self.received.iter_mut().zip(results) {
            // A datagram cut to the slot (MSG_TRUNC) keeps the slot's length, which is already
            // more than any request accepted, so it is dropped as oversize.
            *slot = (message.bytes.min(SLOT_LEN), message.address.and_then(std_address));
            self.received_count += 1;
        }
        Ok(self.received_count)
    }

    /// Calls `answer` with each datagram of the last receive, its source and an empty buffer
    /// for the response; when `answer` returns true the buffer is queued for the source.
    pub(crate) fn answer_each(
        &mut self,
        mut answer: impl FnMut(&[u8], SocketAddr, &mut Vec<u8>) -> bool,
    ) {
        let received = self.received.get(..self.received_count).unwrap_or_default();
        let slots = self.recv_buf.chunks_exact(SLOT_LEN);
        for (&(len, source), slot) in received.iter().zip(slots) {
            // A UDP socket reports only IPv4 and IPv6 sources; anything else cannot be answered.
            let (Some(source), Some(datagram)) = (source, slot.get(..len)) else { continue };
            let (Some(response), Some(destination)) =
                (self.responses.get_mut(self.queued), self.destinations.get_mut(self.queued))
            else {
                break;
            };
            if answer(datagram, source, response) {
                *destination = Some(SockaddrStorage::from(source));
                self.queued += 1;
            }
        }
    }

    /// Sends every queued response in as few system calls as the kernel allows, and empties the
    /// queue. Each error met goes to `on_error` and costs the one response it was about; the
    /// others are still sent.
    pub(crate) fn send(&mut self, fd: RawFd, mut on_error: impl FnMut(io::Error)) {
        let mut first = 0;
        while first < self.queued {
            let count = self.queued - first;
            let buffers = self.responses.get(first..self.queued).unwrap_or_default();
            let destinations = self.destinations.get(first..self.queued).unwrap_or_default();
            let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                [IoSlice::new(buffers.get(i).map_or(&[][..], Vec::as_slice))]
            });
            let sent = sendmmsg(
                fd,
                &mut self.send_headers,
                iovs.get(..count).unwrap_or_default(),
                destinations,
                [],
                MsgFlags::empty(),
            )
            .map(Iterator::count);
            match sent {
                Ok(0) => break,
                Ok(sent) => first += sent,
                Err(nix::errno::Errno::EINTR) => {}
                // The first message could not be sent (sendmmsg reports an error only when
                // nothing was sent): skip it, keep the others.
                Err(errno) => {
                    on_error(io::Error::from(errno));
                    first += 1;
                }
            }
        }
        self.queued = 0;
    }
}

/// A socket address as the standard library spells it.
fn std_address(address: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    address.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}
