//! The shared bus conformance suite run against the in-process bus, one test per contract.

use async_trait::async_trait;
use peerline_bus::conformance::TestBus;
use peerline_bus::local::LocalNetwork;
use peerline_bus::{Bus, BusConfig, BusResult};

/// A fresh in-process bus per test: every test gets its own `LocalNetwork`.
struct Fresh(LocalNetwork);

#[async_trait]
impl TestBus for Fresh {
    fn network(&self) -> String {
        "conformance".into()
    }

    async fn connect(&self, config: BusConfig) -> BusResult<Box<dyn Bus>> {
        Ok(Box::new(self.0.node(config)?))
    }
}

async fn fresh() -> Fresh {
    Fresh(LocalNetwork::new())
}

peerline_bus::bus_conformance_tests!(fresh);

/// `run_all` works too (every test once more, each on a fresh bus).
#[tokio::test]
async fn conformance_run_all() {
    peerline_bus::conformance::run_all(fresh).await;
}
