//! An answered call while its media runs: the timers that give up on it and the state of its
//! supernode connection.
//!
//! - Connect: no ICE/DTLS within [`CallConfig::connect_timeout`] of the media's start ends the
//!   call as `no_media_path`.
//! - Lost path: ICE disconnected for [`CallConfig::lost_path_timeout`] ends it as
//!   `media_path_lost`.
//! - Stall: nothing from the peer for [`CallConfig::stall_after`] after the call connected asks
//!   for an ICE restart, again every twice that while nothing arrives.
//! - Lost supernode: the media goes on while the driver reconnects and resumes the call, at
//!   once and then every [`CallConfig::resume_retry`]; after [`CallConfig::resume_for`] without
//!   success the call ends as `supernode_lost`.
//! - The peer closed the media: wait [`CallConfig::end_wait`] for the supernode's `call_ended`,
//!   which names the reason.

use std::time::Instant;

use peerline_media::EndReason as MediaEnd;

use crate::{CallConfig, CallEnd};

/// Where the media stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Media {
    #[default]
    NotStarted,
    Running,
    /// Asked to stop; its end is awaited.
    Stopping,
    Stopped,
}

/// The supernode connection, as the call sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Signaling {
    #[default]
    Up,
    Reconnecting {
        /// When the resume window closes.
        give_up: Instant,
        /// When to try next (`None` while an attempt runs).
        next_try: Option<Instant>,
    },
}

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Stop the media and end the call so.
    GiveUp(CallEnd),
    /// The supernode did not say why the peer closed the media.
    NoEndWord(MediaEnd),
    /// Nothing arrived from the peer for a while.
    Stalled,
    /// Time to try reconnecting again.
    Resume,
    /// The resume window closed.
    ResumeExpired,
}

/// The in-call state.
#[derive(Debug, Default)]
pub(crate) struct Talk {
    media: Media,
    media_started: Option<Instant>,
    connected: bool,
    last_received: Option<Instant>,
    stalled_at: Option<Instant>,
    lost_since: Option<Instant>,
    signaling: Signaling,
    /// The end decided while the media stops.
    decided: Option<CallEnd>,
    /// The media ended by the peer's close: until when to wait for `call_ended`.
    end_word: Option<(Instant, MediaEnd)>,
}

impl Talk {
    pub(crate) fn media_started(&mut self, now: Instant) {
        self.media = Media::Running;
        self.media_started = Some(now);
    }

    pub(crate) fn media_running(&self) -> bool {
        self.media == Media::Running
    }

    pub(crate) fn media_stopping(&mut self) {
        if self.media == Media::Running {
            self.media = Media::Stopping;
        }
    }

    /// The media stopped; returns the end decided before, if any.
    pub(crate) fn media_ended(&mut self) -> Option<CallEnd> {
        self.media = Media::Stopped;
        self.decided.take()
    }

    pub(crate) fn decide(&mut self, end: CallEnd) {
        self.decided.get_or_insert(end);
    }

    /// Whether the call is on its way out (an end decided, the media stopping, or the wait for
    /// the supernode's word).
    pub(crate) fn is_finishing(&self) -> bool {
        self.decided.is_some() || self.end_word.is_some() || self.media == Media::Stopping
    }

    pub(crate) fn wait_for_end_word(&mut self, now: Instant, config: &CallConfig, end: MediaEnd) {
        self.end_word = Some((now + config.end_wait, end));
    }

    pub(crate) fn waiting_for_end_word(&self) -> Option<MediaEnd> {
        self.end_word.map(|(_, end)| end)
    }

    pub(crate) fn connected(&mut self, now: Instant) {
        self.connected = true;
        self.last_received.get_or_insert(now);
    }

    pub(crate) fn received(&mut self, now: Instant) {
        // Before the call connected nothing counts: the connect phase is not a stall.
        if self.connected {
            self.last_received = Some(now);
            self.stalled_at = None;
        }
    }

    pub(crate) fn path_lost(&mut self, now: Instant) {
        self.lost_since.get_or_insert(now);
    }

    pub(crate) fn path_back(&mut self) {
        self.lost_since = None;
    }

    pub(crate) fn signaling_up(&self) -> bool {
        self.signaling == Signaling::Up
    }

    pub(crate) fn start_reconnect(&mut self, now: Instant, config: &CallConfig) {
        self.signaling =
            Signaling::Reconnecting { give_up: now + config.resume_for, next_try: Some(now) };
    }

    pub(crate) fn resume_due(&self, now: Instant) -> bool {
        matches!(self.signaling, Signaling::Reconnecting { next_try: Some(at), .. } if now >= at)
    }

    pub(crate) fn resume_started(&mut self) {
        if let Signaling::Reconnecting { next_try, .. } = &mut self.signaling {
            *next_try = None;
        }
    }

    /// An attempt failed: whether another one is due within the window.
    pub(crate) fn resume_failed(&mut self, now: Instant, config: &CallConfig) -> bool {
        match &mut self.signaling {
            Signaling::Reconnecting { give_up, next_try } if now < *give_up => {
                *next_try = Some(now + config.resume_retry);
                true
            }
            Signaling::Reconnecting { .. } => false,
            Signaling::Up => true,
        }
    }

    pub(crate) fn signaling_back(&mut self) {
        self.signaling = Signaling::Up;
    }

    /// When the stall timer fires.
    fn stall_at(&self, config: &CallConfig) -> Option<Instant> {
        let limit = config.stall_after?;
        let last = self.last_received?;
        if !self.connected {
            return None;
        }
        Some(self.stalled_at.map_or(last + limit, |t| t + 2 * limit))
    }

    pub(crate) fn poll_timeout(&self, config: &CallConfig) -> Option<Instant> {
        let media = (self.media == Media::Running && self.decided.is_none()).then(|| {
            let connect =
                self.media_started.filter(|_| !self.connected).map(|t| t + config.connect_timeout);
            let lost = self.lost_since.map(|t| t + config.lost_path_timeout);
            [connect, lost, self.stall_at(config)]
        });
        // While an attempt runs (`next_try` is `None`) its result, not a timer, moves on.
        let resume = match self.signaling {
            Signaling::Reconnecting { give_up, next_try: Some(t) } => Some(t.min(give_up)),
            _ => None,
        };
        let end_word = self.end_word.map(|(deadline, _)| deadline);
        media.into_iter().flatten().chain([resume, end_word]).flatten().min()
    }

    pub(crate) fn on_timeout(&mut self, now: Instant, config: &CallConfig) -> Option<Due> {
        if let Some((deadline, end)) = self.end_word
            && now >= deadline
        {
            self.end_word = None;
            return Some(Due::NoEndWord(end));
        }
        if self.media == Media::Running && self.decided.is_none() {
            if !self.connected
                && self.media_started.is_some_and(|t| now >= t + config.connect_timeout)
            {
                return Some(Due::GiveUp(CallEnd::Media(MediaEnd::ConnectTimeout)));
            }
            if self.lost_since.is_some_and(|t| now >= t + config.lost_path_timeout) {
                return Some(Due::GiveUp(CallEnd::Media(MediaEnd::PathLost)));
            }
        }
        if let Signaling::Reconnecting { give_up, next_try: Some(t) } = self.signaling {
            if now >= t && t <= give_up {
                return Some(Due::Resume);
            }
            // An attempt still running when the window closes gets its result: only a window
            // with nothing left to try expires here.
            if now >= give_up {
                return Some(Due::ResumeExpired);
            }
        }
        if self.media == Media::Running
            && self.decided.is_none()
            && let Some(at) = self.stall_at(config)
            && now >= at
        {
            self.stalled_at = Some(now);
            return Some(Due::Stalled);
        }
        None
    }
}
