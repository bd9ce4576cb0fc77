//! Presence: who sees whom, across every supernode of the network.
//!
//! Presence only ever flows between *mutual* contacts (both rows `accepted`, as of the newest
//! change the hub heard of); `invisible` is sent as `offline`. A user may have devices on several
//! supernodes. Each supernode knows the presence of its own users ("local") and publishes every
//! change of it to their mutual contacts over the bus; a supernode holding a viewer keeps what
//! other supernodes reported ("remote", per supernode, newest report first) and shows its viewers
//! the *effective* presence: the local one if the user is online here, otherwise any online
//! report. A report carries a sequence number of its supernode, so an older report that arrives
//! late never overwrites a newer one; a supernode that goes down takes its reports with it.

use peerline_wire::{Event, Presence, Status};

use crate::cluster::{BusMessage, Route};
use crate::hub::{ConnId, Hub, LinkVersion, Output, UserId};

/// What other supernodes reported about a user with viewers here.
#[derive(Debug, Default)]
pub(crate) struct Remote {
    pub(crate) username: String,
    /// Per reporting supernode, its last report. Supernodes where the user has no device are
    /// not kept.
    pub(crate) by_node: Vec<Report>,
}

/// One supernode's last report about a user.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) node: String,
    pub(crate) presence: Presence,
    /// Devices there, invisible ones too.
    pub(crate) devices: u32,
    pub(crate) seq: u64,
}

impl Remote {
    /// Any online report, in node order so that every viewer sees the same one.
    fn best(&self) -> Presence {
        self.by_node
            .iter()
            .filter(|r| r.presence != Presence::Offline)
            .min_by(|a, b| a.node.cmp(&b.node))
            .map_or(Presence::Offline, |r| r.presence)
    }
}

impl Hub {
    /// What the user's devices *here* show: their status, or offline without a device.
    fn local_presence(&self, user: UserId) -> Presence {
        self.users.get(&user).map_or(Presence::Offline, |u| u.presence())
    }

    /// The presence shown to viewers here: local if online here, else what other supernodes say.
    pub(crate) fn effective(&self, user: UserId) -> Presence {
        match self.local_presence(user) {
            Presence::Offline => self.remote.get(&user).map_or(Presence::Offline, Remote::best),
            local => local,
        }
    }

    fn username_of(&self, user: UserId) -> Option<String> {
        self.users
            .get(&user)
            .map(|u| u.username.clone())
            .or_else(|| self.remote.get(&user).map(|r| r.username.clone()))
    }

    /// What `viewer` may see of `subject`: their presence if they are mutual contacts (as both
    /// sides' rows known here say) and the subject is online and not invisible, else offline.
    pub fn presence_seen_by(&self, viewer: UserId, subject: UserId) -> Presence {
        let viewer_agrees = self.users.get(&viewer).is_none_or(|v| v.is_mutual(subject));
        let subject_agrees = match self.users.get(&subject) {
            Some(s) => s.is_mutual(viewer),
            // Known only from reports: the subject's supernode sent them to mutual contacts.
            None => self.users.get(&viewer).is_some_and(|v| v.is_mutual(subject)),
        };
        if viewer_agrees && subject_agrees { self.effective(subject) } else { Presence::Offline }
    }

    /// The events a freshly logged-in connection needs: the presence of each visible contact
    /// that is not offline, by username.
    pub fn presence_snapshot(&self, user: UserId) -> Vec<Event> {
        let Some(u) = self.users.get(&user) else {
            return Vec::new();
        };
        let mut visible: Vec<(String, Presence)> = u
            .mutual_peers()
            .filter_map(|peer| {
                let presence = self.presence_seen_by(user, peer);
                let name = self.username_of(peer)?;
                (presence != Presence::Offline).then_some((name, presence))
            })
            .collect();
        visible.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        visible
            .into_iter()
            .map(|(username, presence)| Event::Presence { username, presence })
            .collect()
    }

    /// A user's first device here went live: it becomes a viewer of its mutual contacts, asks
    /// the other supernodes about those it knows nothing of, and is announced.
    pub(crate) fn presence_login(&mut self, user: UserId, conn: ConnId, first_device: bool) {
        if first_device {
            let peers: Vec<UserId> =
                self.users.get(&user).map(|u| u.mutual_peers().collect()).unwrap_or_default();
            for peer in peers {
                let unknown = !self.users.contains_key(&peer) && !self.remote.contains_key(&peer);
                self.add_viewer(peer, user);
                if unknown {
                    let probe = BusMessage::PresenceProbe { subject: peer, viewer: user };
                    self.outputs.push(Output::Bus { to: Route::User(peer), msg: probe });
                }
            }
        }
        for event in self.presence_snapshot(user) {
            self.outputs.push(Output::Send { conns: vec![conn], event });
        }
        self.refresh(user);
    }

    /// A user's last device here left: announced, then no longer a viewer here.
    pub(crate) fn presence_logout(&mut self, user: UserId) {
        self.refresh(user);
        let peers: Vec<UserId> =
            self.users.get(&user).map(|u| u.mutual_peers().collect()).unwrap_or_default();
        for peer in peers {
            self.remove_viewer(peer, user);
        }
    }

    fn add_viewer(&mut self, subject: UserId, viewer: UserId) {
        let viewers = self.viewers_of.entry(subject).or_default();
        if !viewers.contains(&viewer) {
            viewers.push(viewer);
        }
    }

    fn remove_viewer(&mut self, subject: UserId, viewer: UserId) {
        if let Some(viewers) = self.viewers_of.get_mut(&subject) {
            viewers.retain(|v| *v != viewer);
            if viewers.is_empty() {
                self.viewers_of.remove(&subject);
                // Nobody here looks at the subject any more: forget what others said of it.
                if self.remote.remove(&subject).is_some() && !self.users.contains_key(&subject) {
                    self.announced.remove(&subject);
                }
            }
        }
    }

    /// The user's chosen status changed on a device here: shown here, and taken by the user's
    /// other supernodes.
    pub fn set_status(&mut self, user: UserId, status: Status) {
        self.apply_status(user, status);
        self.outputs
            .push(Output::Bus { to: Route::User(user), msg: BusMessage::Status { user, status } });
    }

    pub(crate) fn apply_status(&mut self, user: UserId, status: Status) {
        if let Some(u) = self.users.get_mut(&user) {
            u.status = status;
            self.refresh(user);
        }
    }

    /// Storage says `a` and `b` are (or are no longer) mutual contacts as of change
    /// `version`, decided on this supernode: applied here and sent to the supernodes of both.
    pub fn set_link(
        &mut self,
        a: UserId,
        b: UserId,
        mutual: bool,
        version: LinkVersion,
        now: std::time::Instant,
    ) {
        self.apply_link(a, b, mutual, version, now);
        for user in [a, b] {
            let msg = BusMessage::Link { a, b, mutual, version };
            self.outputs.push(Output::Bus { to: Route::User(user), msg });
        }
    }

    /// Takes a contact change unless a newer one of the pair is known: changes may be heard of
    /// out of order (two requests at once, or over the bus). Presence starts or stops flowing
    /// between the two, and each is told what they now see of the other if it changed.
    pub(crate) fn apply_link(
        &mut self,
        a: UserId,
        b: UserId,
        mutual: bool,
        version: LinkVersion,
        now: std::time::Instant,
    ) {
        self.recent_links.push_back(crate::hub::RecentLink { a, b, mutual, version, at: now });
        let before = [(a, b), (b, a)].map(|(v, s)| self.presence_seen_by(v, s));
        // Taken first: a subject known only from reports is forgotten with its last viewer.
        let names = [b, a].map(|s| self.username_of(s));
        for (x, y) in [(a, b), (b, a)] {
            let taken = self.users.get_mut(&x).is_some_and(|u| u.take_link(y, mutual, version));
            if taken {
                if mutual {
                    self.add_viewer(y, x);
                    // The other side's supernode may know nothing of us yet.
                    self.publish_to(x, y);
                    if !self.users.contains_key(&y) && !self.remote.contains_key(&y) {
                        let probe = BusMessage::PresenceProbe { subject: y, viewer: x };
                        self.outputs.push(Output::Bus { to: Route::User(y), msg: probe });
                    }
                } else {
                    self.remove_viewer(y, x);
                }
            }
        }
        for (i, (viewer, subject)) in [(a, b), (b, a)].into_iter().enumerate() {
            let after = self.presence_seen_by(viewer, subject);
            let name = names.get(i).cloned().flatten().or_else(|| self.username_of(subject));
            if before.get(i) != Some(&after)
                && let Some(username) = name
            {
                self.tell_viewer(viewer, username, after);
            }
        }
    }

    /// Whether `a` lists `b` as a mutual contact here.
    pub fn is_linked(&self, a: UserId, b: UserId) -> bool {
        self.users.get(&a).is_some_and(|u| u.is_mutual(b))
    }

    fn tell_viewer(&mut self, viewer: UserId, username: String, presence: Presence) {
        let Some(v) = self.users.get(&viewer) else {
            return;
        };
        let conns = self.live_conns(v);
        if !conns.is_empty() {
            self.outputs
                .push(Output::Send { conns, event: Event::Presence { username, presence } });
        }
    }

    /// After anything that may change a user's presence: local viewers hear of a change of the
    /// effective presence, and other supernodes of a change of the local one.
    pub(crate) fn refresh(&mut self, user: UserId) {
        let effective = self.effective(user);
        let before = self.announced.get(&user).copied().unwrap_or(Presence::Offline);
        if effective != before {
            if effective == Presence::Offline {
                self.announced.remove(&user);
            } else {
                self.announced.insert(user, effective);
            }
            self.announce_here(user, effective);
        }
        let local =
            (self.local_presence(user), self.users.get(&user).map_or(0, |u| u.device_count()));
        if let Some(u) = self.users.get_mut(&user)
            && u.published != local
        {
            u.published = local;
            let peers: Vec<UserId> = u.mutual_peers().collect();
            for peer in peers {
                self.publish_to(user, peer);
            }
        }
    }

    /// Tells the viewers here of a user's new effective presence.
    fn announce_here(&mut self, user: UserId, presence: Presence) {
        let Some(username) = self.username_of(user) else { return };
        let viewers = self.viewers_of.get(&user).cloned().unwrap_or_default();
        let subject = self.users.get(&user);
        let mut conns: Vec<ConnId> = viewers
            .iter()
            .filter(|v| subject.is_none_or(|s| s.is_mutual(**v)))
            .filter_map(|v| self.users.get(v))
            .filter(|v| v.is_mutual(user))
            .flat_map(|v| self.live_conns(v))
            .collect();
        if !conns.is_empty() {
            conns.sort();
            self.outputs
                .push(Output::Send { conns, event: Event::Presence { username, presence } });
        }
    }

    /// Sends the local presence of `subject` to the supernodes of `viewer`, if they are mutual
    /// contacts as the subject's rows say.
    pub(crate) fn publish_to(&mut self, subject: UserId, viewer: UserId) {
        self.report_presence(subject, viewer, Route::User(viewer));
    }

    /// Sends the local presence of `subject`, with a new report number, to `to`, if `viewer`
    /// (who sees it there) is a mutual contact as the subject's rows say.
    pub(crate) fn report_presence(&mut self, subject: UserId, viewer: UserId, to: Route) {
        let Some(s) = self.users.get(&subject) else { return };
        if !s.is_mutual(viewer) {
            return;
        }
        self.next_seq += 1;
        let msg = BusMessage::Presence {
            subject,
            username: s.username.clone(),
            presence: s.presence(),
            devices: s.device_count(),
            seq: self.next_seq,
        };
        self.outputs.push(Output::Bus { to, msg });
    }

    /// A report from supernode `node` about `subject`.
    pub(crate) fn remote_presence(
        &mut self,
        node: &str,
        subject: UserId,
        username: String,
        presence: Presence,
        devices: u32,
        seq: u64,
    ) {
        if !self.viewers_of.contains_key(&subject) {
            return;
        }
        let remote =
            self.remote.entry(subject).or_insert_with(|| Remote { username, by_node: Vec::new() });
        let report = Report { node: node.to_owned(), presence, devices, seq };
        let gone = presence == Presence::Offline && devices == 0;
        match remote.by_node.iter().position(|r| r.node == node) {
            Some(i) => {
                let Some(entry) = remote.by_node.get_mut(i) else { return };
                if entry.seq >= seq {
                    return;
                }
                if gone {
                    remote.by_node.remove(i);
                } else {
                    *entry = report;
                }
            }
            None if !gone => remote.by_node.push(report),
            None => {}
        }
        self.refresh(subject);
    }

    /// A supernode went down or restarted: what it reported no longer holds, and calls that
    /// went through it stop waiting for it.
    pub fn node_gone(&mut self, node: &str, now: std::time::Instant) {
        let affected: Vec<UserId> = self
            .remote
            .iter_mut()
            .filter_map(|(user, r)| {
                let before = r.by_node.len();
                r.by_node.retain(|report| report.node != node);
                (r.by_node.len() != before).then_some(*user)
            })
            .collect();
        for user in affected {
            self.refresh(user);
        }
        self.calls_node_down(node, now);
    }

    /// Subjects with viewers here, for metrics: `(subjects, known from other supernodes)`.
    pub fn presence_table_sizes(&self) -> (usize, usize) {
        (self.viewers_of.len(), self.remote.len())
    }
}
