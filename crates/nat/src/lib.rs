//! NAT traversal for Peerline calls, the way iroh keeps its hole punching apart from the rest:
//! [`gather`] finds a call's candidates (a host socket, its server-reflexive address from the
//! supernode's STUN responder, relayed addresses on TURN servers), and [`relay`] drives TURN
//! allocations (RFC 8656) as sockets the media driver can use.
//!
//! Nothing here knows about accounts or signaling: the call engine (`peerline-call`) hands in
//! the [`Servers`] its supernode connection named, and takes back sockets and candidates.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod gather;
pub mod relay;

pub use gather::{
    CallPath, CallSocket, GatherError, Gathered, RelayInfo, Servers, TurnCredentials, gather,
    public_ip, public_ip_of,
};
pub use relay::{RelayError, RelaySocket, RelayTransport, TurnServer};
