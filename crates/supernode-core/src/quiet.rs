//! Quiet logins: a one-shot command (`peerline send`, `contacts`, `inbox`…) logs in, does a few
//! requests and leaves. Publishing presence for it would flap "online"/"offline" to every contact
//! each time, and pushing events to it would hand messages to a device that never shows them. So
//! a quiet connection is logged in (its requests act as the user) but is not one of the user's
//! online connections: it sets no presence, receives no events and rings for no call.

use std::time::Instant;

use peerline_wire::DeviceId;

use crate::hub::{ConnId, Hub, UserId};

impl Hub {
    /// Binds a connection to a user and device without making it online (see the module
    /// documentation). The user's quiet connections are capped like online ones, oldest closed
    /// first. Returns `false` if the connection is gone.
    pub fn login_quiet(
        &mut self,
        conn: ConnId,
        user: UserId,
        device: DeviceId,
        now: Instant,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.login = Some((user, device));
        c.last_activity = now;
        let source = c.pre_login_source.take();
        self.limits.left_pre_login(source);
        let quiet = self.quiet.entry(user).or_default();
        quiet.push((conn, device));
        let excess = quiet.len().saturating_sub(self.config.max_connections_per_user);
        let oldest: Vec<ConnId> = quiet.iter().take(excess).map(|(c, _)| *c).collect();
        for old in oldest {
            self.close(old, peerline_wire::EndReason::TooManyConnections);
        }
        true
    }

    /// Whether a connection logged in quietly.
    pub fn is_quiet(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .and_then(|c| c.login)
            .is_some_and(|(user, _)| self.quiet_conns(user).any(|(c, _)| c == conn))
    }

    /// The user's quiet connections here.
    pub(crate) fn quiet_conns(
        &self,
        user: UserId,
    ) -> impl Iterator<Item = (ConnId, DeviceId)> + '_ {
        self.quiet.get(&user).into_iter().flatten().copied()
    }

    /// Forgets a quiet connection that closed.
    pub(crate) fn forget_quiet(&mut self, user: UserId, conn: ConnId) {
        if let Some(list) = self.quiet.get_mut(&user) {
            list.retain(|(c, _)| *c != conn);
            if list.is_empty() {
                self.quiet.remove(&user);
            }
        }
    }
}
