//! One load-generating thread: a few UDP sockets, each connected to the STUN server, sending
//! Binding requests at the thread's share of the target rate and reading the answers, in batches
//! of up to [`BATCH`] datagrams per `sendmmsg`/`recvmmsg` (through `nix`'s safe wrappers).
//!
//! Why batches and plain threads: on loopback the kernel work per datagram is a couple of
//! microseconds, and with one system call per datagram the load generator needs as much CPU as
//! the server it measures. Batching makes it cheap enough to offer several hundred thousand
//! requests per second from one thread, leaving the other core to the server.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

use super::transactions::{REQUEST_LEN, Transactions, Verdict};

/// Most datagrams per system call.
const BATCH: usize = 64;
/// Receive slot size: any STUN response to a Binding request fits several times over.
const SLOT_LEN: usize = 512;
/// The longest the thread sleeps when it has nothing to do (no request due, nothing received).
const IDLE_SLEEP: Duration = Duration::from_micros(100);

/// Counts shared with the progress display, updated once per loop pass.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests sent by every thread.
    pub sent: AtomicU64,
    /// Valid answers received by every thread.
    pub answered: AtomicU64,
}

/// One socket of the thread and its transactions.
pub struct Flow {
    /// Connected to the server.
    pub socket: UdpSocket,
    /// Its requests and their verdicts.
    pub transactions: Transactions,
}

/// What one thread should do.
pub struct Work {
    /// The sockets.
    pub flows: Vec<Flow>,
    /// Requests per second over all of them.
    pub rate: f64,
    /// Common start of the run: requests are due at `rate` per second from here.
    pub start: Instant,
    /// Send for this long after `start`.
    pub send_for: Duration,
    /// Requests to send in all: `rate` × `send_for`, rounded by the caller so that the threads'
    /// totals add up exactly.
    pub total: u64,
    /// Then wait at most this long for the last answers.
    pub drain_for: Duration,
}

/// What one thread counted.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Requests sent.
    pub sent: u64,
    /// Valid answers.
    pub answered: u64,
    /// Answers to our requests that were not valid.
    pub wrong: u64,
    /// Datagrams that matched no open request.
    pub unmatched: u64,
    /// Send and receive errors (each send error costs the requests that were not sent).
    pub socket_errors: u64,
    /// Latency of the valid answers, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Seconds from the start until the last request was sent (the longest of the threads).
    pub send_secs: f64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            sent: 0,
            answered: 0,
            wrong: 0,
            unmatched: 0,
            socket_errors: 0,
            send_secs: 0.0,
            // 1 ns to 60 s at three significant digits: about 200 KiB.
            latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        })
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.sent += other.sent;
        self.answered += other.answered;
        self.wrong += other.wrong;
        self.unmatched += other.unmatched;
        self.socket_errors += other.socket_errors;
        self.send_secs = self.send_secs.max(other.send_secs);
        self.latency_ns.add(&other.latency_ns)?;
        Ok(())
    }

    /// An empty tally (to merge into).
    pub fn empty() -> anyhow::Result<Self> {
        Self::new()
    }
}

/// The reused buffers of one thread.
struct Buffers {
    requests: Vec<[u8; REQUEST_LEN]>,
    send_headers: MultiHeaders<SockaddrStorage>,
    no_addresses: Vec<Option<SockaddrStorage>>,
    recv_buf: Vec<u8>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    lengths: Vec<usize>,
}

/// Runs the thread's share of the load; returns its counts.
pub fn run(mut work: Work, progress: &Progress) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut buffers = Buffers {
        requests: vec![[0; REQUEST_LEN]; BATCH],
        send_headers: MultiHeaders::preallocate(BATCH, None),
        no_addresses: vec![None; BATCH],
        recv_buf: vec![0; BATCH * SLOT_LEN],
        recv_headers: MultiHeaders::preallocate(BATCH, None),
        lengths: vec![0; BATCH],
    };
    let flows = work.flows.len().max(1);
    let mut next_flow = 0usize;
    let ns = |at: Instant| at.saturating_duration_since(work.start).as_nanos() as u64;
    // A load generator that cannot keep up still stops soon after the planned time.
    let give_up = work.send_for + work.send_for / 10 + Duration::from_millis(100);
    while tally.sent < work.total {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(work.start);
        if elapsed >= give_up {
            break;
        }
        let due = ((work.rate * elapsed.as_secs_f64()) as u64).min(work.total);
        let mut deficit = due.saturating_sub(tally.sent);
        let (sent_before, answered_before) = (tally.sent, tally.answered);
        // Spread the due requests evenly over the sockets (so that each source address sees
        // its share of the rate even after a stall), at most a batch each and one pass over
        // the sockets before reading answers, so that answers do not pile up in the kernel.
        let share = deficit.div_ceil(flows as u64).min(BATCH as u64);
        for _ in 0..flows {
            if deficit == 0 {
                break;
            }
            let Some(flow) = work.flows.get_mut(next_flow) else { break };
            next_flow = (next_flow + 1) % flows;
            let count = deficit.min(share) as usize;
            match send_batch(flow, &mut buffers, count, ns(Instant::now())) {
                Ok(sent) => {
                    tally.sent += sent as u64;
                    deficit -= sent as u64;
                }
                Err(_) => tally.socket_errors += 1,
            }
        }
        for flow in &mut work.flows {
            receive_all(flow, &mut buffers, &mut tally, &ns);
        }
        progress.sent.fetch_add(tally.sent - sent_before, Ordering::Relaxed);
        progress.answered.fetch_add(tally.answered - answered_before, Ordering::Relaxed);
        if tally.sent == sent_before && tally.answered == answered_before {
            // Nothing happened: wait for the next request to be due, briefly.
            let next_due = Duration::from_secs_f64((tally.sent + 1) as f64 / work.rate);
            let wait = next_due.saturating_sub(work.start.elapsed()).min(IDLE_SLEEP);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }
    tally.send_secs = work.start.elapsed().as_secs_f64();
    // Drain: the last answers, until every request is closed or the time is up.
    let deadline = Instant::now() + work.drain_for;
    while Instant::now() < deadline {
        let open: u64 = work.flows.iter().map(|f| f.transactions.open()).sum();
        if open == 0 {
            break;
        }
        let before = tally.answered + tally.wrong + tally.unmatched;
        let answered_before = tally.answered;
        for flow in &mut work.flows {
            receive_all(flow, &mut buffers, &mut tally, &ns);
        }
        progress.answered.fetch_add(tally.answered - answered_before, Ordering::Relaxed);
        if tally.answered + tally.wrong + tally.unmatched == before {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
    Ok(tally)
}

/// Sends `count` (≤ [`BATCH`]) new requests on `flow`; returns how many the kernel took.
fn send_batch(
    flow: &mut Flow,
    buffers: &mut Buffers,
    count: usize,
    now_ns: u64,
) -> io::Result<usize> {
    let count = count.min(BATCH);
    for (k, request) in buffers.requests.iter_mut().take(count).enumerate() {
        *request = flow.transactions.request(k as u64);
    }
    let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|k| {
        [IoSlice::new(buffers.requests.get(k).map_or(&[][..], |r| &r[..]))]
    });
    let result = sendmmsg(
        flow.socket.as_raw_fd(),
        &mut buffers.send_headers,
        iovs.get(..count).unwrap_or_default(),
        buffers.no_addresses.get(..count).unwrap_or_default(),
        [],
        MsgFlags::MSG_DONTWAIT,
    )
    .map(Iterator::count);
    let sent = match result {
        Ok(sent) => sent,
        // The socket's send buffer is full: nothing sent this time, try again next pass.
        Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::EINTR) => 0,
        Err(errno) => return Err(io::Error::from(errno)),
    };
    flow.transactions.sent(sent as u64, now_ns);
    Ok(sent)
}

/// Reads every answer queued on `flow`'s socket and judges it.
fn receive_all(
    flow: &mut Flow,
    buffers: &mut Buffers,
    tally: &mut Tally,
    ns: &impl Fn(Instant) -> u64,
) {
    loop {
        let received = {
            let mut slots = buffers.recv_buf.chunks_exact_mut(SLOT_LEN);
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
            match recvmmsg(
                flow.socket.as_raw_fd(),
                &mut buffers.recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => {
                    let mut n = 0;
                    for (length, message) in buffers.lengths.iter_mut().zip(results) {
                        *length = message.bytes.min(SLOT_LEN);
                        n += 1;
                    }
                    n
                }
                Err(Errno::EAGAIN | Errno::EINTR) => return,
                // ICMP errors from an earlier request (port unreachable: no server) and the
                // like: counted, and the socket is read again next pass.
                Err(_) => {
                    tally.socket_errors += 1;
                    return;
                }
            }
        };
        let now_ns = ns(Instant::now());
        let slots = buffers.recv_buf.chunks_exact(SLOT_LEN);
        for (&length, slot) in buffers.lengths.iter().take(received).zip(slots) {
            match flow.transactions.on_response(slot.get(..length).unwrap_or_default(), now_ns) {
                Verdict::Answered { latency_ns } => {
                    tally.answered += 1;
                    // Out of range only past 60 s, far beyond the drain time.
                    let _ = tally.latency_ns.record(latency_ns.max(1));
                }
                Verdict::Wrong => tally.wrong += 1,
                Verdict::Unmatched => tally.unmatched += 1,
            }
        }
        if received < BATCH {
            return;
        }
    }
}

/// Binds a socket on `source` (port chosen by the kernel) connected to `server`, with a large
/// receive buffer so that answers are not dropped between two reads.
pub fn open_socket(source: SocketAddr, server: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(source)?;
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    // As root, past net.core.rmem_max; otherwise up to it. Best effort either way.
    if nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &RECV_BUFFER)
        .is_err()
    {
        let _ =
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &RECV_BUFFER);
    }
    Ok(socket)
}

/// Receive buffer per socket.
const RECV_BUFFER: usize = 4 << 20;
