//! Readiness: a contract is loaded and Kafka knows every topic it names.
//! Once ready, the receiver stays ready: a contract that adds a resource
//! must not take the whole pod out of service while its topic is checked.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use ferry_common::producer::ProducerPool;

use crate::routes::Routes;

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_millis(500);

pub(crate) async fn check(
    routes: Arc<Routes>,
    producers: Arc<ProducerPool>,
    ready: Arc<AtomicBool>,
) {
    loop {
        let mut missing = Vec::new();
        // A resource whose credentials cannot be read answers 503; it does
        // not hold up the others.
        for route in routes.iter() {
            let Ok(cluster) = &route.cluster else {
                continue;
            };
            let known = match producers.get(cluster) {
                Ok(producer) => producer.has_topic(&route.topic, METADATA_TIMEOUT).await,
                Err(error) => {
                    tracing::error!(%error, "no producer");
                    false
                }
            };
            if !known {
                missing.push(route.topic.clone());
            }
        }
        if missing.is_empty() {
            if !ready.swap(true, Ordering::AcqRel) {
                tracing::info!("receiver ready");
            }
            return;
        }
        tracing::debug!(?missing, "waiting for topic metadata");
        tokio::time::sleep(RETRY_EVERY).await;
    }
}
