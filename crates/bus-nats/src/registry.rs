//! The call registry on JetStream key-value: one bucket per network, one key per answered call,
//! expired by the bucket's `max_age`.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use peerline_bus::{BusError, BusResult, valid_call_id};

use crate::wire::calls_bucket;

/// How long a registry call may take before it counts as unavailable.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// The registry of one network.
pub(crate) struct Registry {
    store: kv::Store,
}

impl Registry {
    /// Opens the network's bucket, creating it (file storage, one value per key, `max_age` =
    /// `call_ttl`) if it is missing. A bucket made earlier with another `max_age` is used as it
    /// is, with a warning: the first supernode of a network decides.
    pub(crate) async fn open(
        client: async_nats::Client,
        network: &str,
        call_ttl: Duration,
    ) -> BusResult<Registry> {
        let mut js = jetstream::new(client);
        js.set_timeout(REGISTRY_TIMEOUT);
        let bucket = calls_bucket(network);
        if let Ok(store) = js.get_key_value(&bucket).await {
            warn_if_ttl_differs(&store, call_ttl).await;
            return Ok(Registry { store });
        }
        let config = kv::Config {
            bucket: bucket.clone(),
            description: "Peerline: answered calls, so that another supernode can take them over"
                .into(),
            history: 1,
            max_age: call_ttl,
            storage: jetstream::stream::StorageType::File,
            ..kv::Config::default()
        };
        match js.create_key_value(config).await {
            Ok(store) => Ok(Registry { store }),
            // Another supernode may have created it meanwhile.
            Err(create) => match js.get_key_value(&bucket).await {
                Ok(store) => Ok(Registry { store }),
                Err(_) => Err(BusError::Unavailable(format!(
                    "cannot create the call registry (JetStream key-value bucket {bucket}): \
                     {create}; is JetStream enabled on the NATS server (nats-server -js)?"
                ))),
            },
        }
    }

    pub(crate) async fn put(&self, call_id: &str, record: Bytes) -> BusResult<()> {
        check(call_id)?;
        within("put_call", self.store.put(call_id, record)).await.map(|_revision| ())
    }

    pub(crate) async fn get(&self, call_id: &str) -> BusResult<Option<Bytes>> {
        check(call_id)?;
        within("get_call", self.store.get(call_id)).await
    }

    pub(crate) async fn delete(&self, call_id: &str) -> BusResult<()> {
        check(call_id)?;
        within("delete_call", self.store.delete(call_id)).await
    }
}

/// Call ids become KV keys: only the supernode's format (32 lowercase hex) gets that far.
fn check(call_id: &str) -> BusResult<()> {
    if valid_call_id(call_id) {
        Ok(())
    } else {
        Err(BusError::Refused(format!("call id {call_id:?} must be 32 lowercase hex characters")))
    }
}

/// Runs a registry operation with a deadline; every failure is `Unavailable` (the keys and
/// values were checked before, so what is left is the server or the connection).
async fn within<T, E: std::fmt::Display>(
    what: &str,
    operation: impl Future<Output = Result<T, E>>,
) -> BusResult<T> {
    match tokio::time::timeout(REGISTRY_TIMEOUT, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(BusError::Unavailable(format!("call registry {what}: {e}"))),
        Err(_) => Err(BusError::Unavailable(format!(
            "call registry {what}: no answer within {REGISTRY_TIMEOUT:?}"
        ))),
    }
}

async fn warn_if_ttl_differs(store: &kv::Store, call_ttl: Duration) {
    if let Ok(status) = store.status().await
        && status.max_age() != call_ttl
    {
        tracing::warn!(
            bucket = status.bucket(),
            bucket_ttl = ?status.max_age(),
            configured_ttl = ?call_ttl,
            "the call registry bucket exists with another time to live; keeping the bucket's"
        );
    }
}
