//! Timers and limits of a call's policy, with the defaults the CLI uses.

use std::time::Duration;

/// Timers and limits of a call. The defaults are the ones the CLI uses.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The caller gives up on an unanswered call after this long (the supernode ends it after
    /// 45 s; this only guards against a lost `call_ended`).
    pub ring_guard: Duration,
    /// Give up when ICE and DTLS are not up this long after the media started.
    pub connect_timeout: Duration,
    /// Give up when the path stays lost (ICE disconnected) this long: half the RFC 7675 consent
    /// lifetime.
    pub lost_path_timeout: Duration,
    /// Nothing from the peer this long after the call connected means the path is probably gone
    /// (audio, even silent with DTX, arrives several times a second): restart ICE. Reported
    /// again every twice this long while nothing arrives. `None` never restarts.
    pub stall_after: Option<Duration>,
    /// At most one restart (or request for one) per this long.
    pub restart_spacing: Duration,
    /// Restarts (caller) or requests for one (callee) per call, as the supernode allows.
    pub max_restarts: u32,
    /// The longest one step of IO (a request, gathering, a media command) may take; the driver
    /// reports a step that takes longer as failed.
    pub step_timeout: Duration,
    /// One attempt to reconnect to the supernode and take the call over.
    pub resume_try: Duration,
    /// Between attempts.
    pub resume_retry: Duration,
    /// How long to keep trying before the call ends (the media goes on meanwhile).
    pub resume_for: Duration,
    /// After the peer closed the media, how long to wait for the supernode's `call_ended`,
    /// which names the reason.
    pub end_wait: Duration,
    /// Only relayed candidates: the public address is never probed.
    pub relay_only: bool,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            ring_guard: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            lost_path_timeout: Duration::from_secs(15),
            stall_after: Some(Duration::from_secs(2)),
            restart_spacing: Duration::from_secs(2),
            max_restarts: 16,
            step_timeout: Duration::from_secs(5),
            resume_try: Duration::from_secs(3),
            resume_retry: Duration::from_secs(1),
            resume_for: Duration::from_secs(30),
            end_wait: Duration::from_secs(1),
            relay_only: false,
        }
    }
}
