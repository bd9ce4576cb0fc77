//! The host cache of one network: the supernode URLs a client may connect to, in the order to
//! try them. The URLs its user gave come first (most recent first), then the list the last
//! `logged_in` reply carried (`supernodes`), as Skype's clients kept a host cache of up to 200
//! supernodes. Without IO: the client library loads and saves the two lists in its home.
//!
//! URLs are compared as given; the caller brings them to one canonical form first.

/// Most URLs a host cache holds, given and learned together.
pub const MAX_HOSTS: usize = 200;

/// The supernodes of one network as a client knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCache {
    /// What the user gave, most recent first.
    given: Vec<String>,
    /// What the supernodes said at the last login that said anything, minus `given`.
    learned: Vec<String>,
}

impl HostCache {
    /// A cache from saved lists. Duplicates and empty strings are dropped; the lists are cut so
    /// that together they hold at most [`MAX_HOSTS`] URLs, given ones first.
    pub fn new(given: Vec<String>, learned: Vec<String>) -> Self {
        let mut cache = Self { given, learned };
        cache.normalize();
        cache
    }

    /// The user named `urls` for this run: they go first, in their order, ahead of the URLs given
    /// before (which stay, so that a user who once named a supernode can still fail over to it).
    pub fn give(&mut self, urls: &[String]) {
        let older = std::mem::take(&mut self.given);
        self.given = urls.iter().cloned().chain(older).collect();
        self.normalize();
    }

    /// The supernode's list from a `logged_in` reply replaces what an earlier login said. An
    /// empty list changes nothing: a supernode that lists none says nothing about its network.
    pub fn learn(&mut self, urls: &[String]) {
        if urls.is_empty() {
            return;
        }
        self.learned = urls.to_vec();
        self.normalize();
    }

    /// Every host in the order to try them: given, then learned; no duplicates, at most
    /// [`MAX_HOSTS`].
    pub fn hosts(&self) -> Vec<String> {
        self.given.iter().chain(&self.learned).cloned().collect()
    }

    /// The URLs the user gave, most recent first.
    pub fn given(&self) -> &[String] {
        &self.given
    }

    /// The URLs the supernodes listed, without those the user gave.
    pub fn learned(&self) -> &[String] {
        &self.learned
    }

    /// Whether `url` is one of the hosts.
    pub fn contains(&self, url: &str) -> bool {
        self.given.iter().chain(&self.learned).any(|u| u == url)
    }

    /// Restores the invariants: no empty URL, no duplicate (in either list or across them), at
    /// most [`MAX_HOSTS`] in all with the given ones kept first.
    fn normalize(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.given.retain(|u| !u.is_empty() && seen.insert(u.clone()));
        self.given.truncate(MAX_HOSTS);
        self.learned.retain(|u| !u.is_empty() && seen.insert(u.clone()));
        self.learned.truncate(MAX_HOSTS - self.given.len());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn urls(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("wss://{n}:7443")).collect()
    }

    #[test]
    fn given_urls_come_first_then_the_servers_list_without_duplicates() {
        let mut cache = HostCache::new(urls(&["sn1"]), Vec::new());
        cache.learn(&urls(&["sn1", "sn2", "sn3", "sn2"]));
        assert_eq!(cache.hosts(), urls(&["sn1", "sn2", "sn3"]));
        assert_eq!(cache.learned(), urls(&["sn2", "sn3"]).as_slice());
        assert!(cache.contains("wss://sn3:7443"));
        assert!(!cache.contains("wss://sn4:7443"));
    }

    #[test]
    fn the_latest_given_urls_lead_and_older_ones_stay() {
        let mut cache = HostCache::new(urls(&["sn1"]), urls(&["sn2", "sn3"]));
        cache.give(&urls(&["sn3", "sn9"]));
        assert_eq!(cache.given(), urls(&["sn3", "sn9", "sn1"]).as_slice());
        assert_eq!(cache.hosts(), urls(&["sn3", "sn9", "sn1", "sn2"]));
    }

    #[test]
    fn a_new_list_replaces_the_old_one_and_an_empty_one_changes_nothing() {
        let mut cache = HostCache::new(urls(&["sn1"]), urls(&["sn2", "sn3"]));
        cache.learn(&[]);
        assert_eq!(cache.hosts(), urls(&["sn1", "sn2", "sn3"]));
        cache.learn(&urls(&["sn4"]));
        assert_eq!(cache.hosts(), urls(&["sn1", "sn4"]));
    }

    #[test]
    fn the_cache_holds_at_most_200_hosts_given_ones_first() {
        let many: Vec<String> = (0..300).map(|i| format!("wss://learned{i}:7443")).collect();
        let mut cache = HostCache::new(vec!["wss://mine:7443".into(), String::new()], many.clone());
        assert_eq!(cache.hosts().len(), MAX_HOSTS);
        assert_eq!(cache.hosts()[0], "wss://mine:7443");
        assert_eq!(cache.hosts()[1], many[0]);
        assert_eq!(cache.hosts()[199], many[198]);

        // Given URLs push learned ones out, never the other way round.
        let given: Vec<String> = (0..250).map(|i| format!("wss://given{i}:7443")).collect();
        cache.give(&given);
        assert_eq!(cache.hosts(), given[..MAX_HOSTS].to_vec());
        assert!(cache.learned().is_empty());
        cache.learn(&many);
        assert_eq!(cache.hosts().len(), MAX_HOSTS);
    }
}
