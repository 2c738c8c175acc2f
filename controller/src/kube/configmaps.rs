//! The ConfigMaps of the reference's names: the contract the data plane
//! mounts, and the Kafka defaults for brokers that name none.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    api::{Api, Patch, PatchParams, PostParams},
    Client,
};
use serde_json::json;

use super::api::{absent_or, get_configmap};

/// The contract ConfigMap, by the reference implementation's name; the
/// data plane mounts its key `data`.
pub const CONTRACT_CONFIGMAP: &str = "kafka-broker-brokers-triggers";
/// Kafka defaults for brokers whose spec.config names nothing.
pub const DEFAULTS_CONFIGMAP: &str = "kafka-broker-config";
pub async fn contract_configmap(client: &Client, namespace: &str) -> Option<String> {
    let cm = get_configmap(client, namespace, CONTRACT_CONFIGMAP)
        .await
        .ok()??;
    cm.data?.remove("data").filter(|d| !d.trim().is_empty())
}

pub async fn push_contract(
    client: &Client,
    namespace: &str,
    contract: &str,
) -> Result<(), kube::Error> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    if absent_or(api.get(CONTRACT_CONFIGMAP).await)?.is_some() {
        let patch = json!({"data": {"data": contract}});
        api.patch(
            CONTRACT_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    } else {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONTRACT_CONFIGMAP, "namespace": namespace},
            "data": {"data": contract},
        }))
        .expect("a valid ConfigMap");
        api.create(&PostParams::default(), &cm).await?;
    }
    tracing::info!(
        namespace,
        name = CONTRACT_CONFIGMAP,
        "contract ConfigMap written"
    );
    Ok(())
}
