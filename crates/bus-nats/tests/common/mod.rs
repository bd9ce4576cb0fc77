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
}

#[async_trait]
impl TestBus for OnServer {
    fn network(&self) -> String {
        self.network.clone()
    }

    async fn connect(&self, config: BusConfig) -> BusResult<Box<dyn Bus>> {
        Ok(Box::new(NatsBus::connect(&self.url, config).await?))
    }
}
