//! Leader election: one replica holds the Lease and acts; the others
//! stand by.

use std::time::Duration;

use kube::{
    api::{Api, DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    Client,
};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::api::absent_or;

pub const LEASE: &str = "ferry-controller";
const LEASE_SECONDS: i64 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Holds (or waits for) the Lease; the receiver says whether this replica
/// leads.
pub fn spawn_lease_keeper(
    client: Client,
    namespace: String,
    identity: String,
    shutdown: CancellationToken,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let leases: Api<DynamicObject> = Api::namespaced_with(
        client,
        &namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
            "leases",
        ),
    );
    tokio::spawn(async move {
        loop {
            let leading = match try_lead(&leases, &identity).await {
                Ok(leading) => leading,
                Err(error) => {
                    tracing::warn!(%error, "cannot read or renew the lease");
                    false
                }
            };
            tx.send_if_modified(|current| std::mem::replace(current, leading) != leading);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
        }
    });
    rx
}

async fn try_lead(leases: &Api<DynamicObject>, identity: &str) -> Result<bool, kube::Error> {
    let now = chrono::Utc::now();
    let renew = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let spec = json!({"holderIdentity": identity, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew});
    let Some(lease) = absent_or(leases.get(LEASE).await)? else {
        let lease: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE},
            "spec": spec,
        }))
        .expect("a valid Lease");
        leases.create(&PostParams::default(), &lease).await?;
        return Ok(true);
    };
    let holder = lease.data["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default();
    let renewed = lease.data["spec"]["renewTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let expired =
        renewed.is_none_or(|t| now.signed_duration_since(t).num_seconds() > LEASE_SECONDS);
    if holder != identity && !expired {
        return Ok(false);
    }
    leases
        .patch(
            LEASE,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await?;
    Ok(true)
}
