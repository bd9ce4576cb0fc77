//! What the NATS bus tests share: a [`TestBus`] on a running nats-server.

use async_trait::async_trait;
use peerline_bus::conformance::TestBus;
use peerline_bus::{Bus, BusConfig, BusResult};
use peerline_bus_nats::NatsBus;

/// One network on a running server: conformance tests get a network name of their own, so they
/// share the server without hearing each other.
pub struct OnServer {
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    /// This test's network name.
    pub network: String,
    /// Overrides [`BusConfig::user_shards`] of every node (`None`: the default).
    pub user_shards: Option<u32>,
}

#[async_trait]
impl TestBus for OnServer {
    fn network(&self) -> String {
        self.network.clone()
    }

    async fn connect(&self, config: BusConfig) -> BusResult<Box<dyn Bus>> {
        let user_shards = self.user_shards.unwrap_or(config.user_shards);
        Ok(Box::new(NatsBus::connect(&self.url, BusConfig { user_shards, ..config }).await?))
    }
}
