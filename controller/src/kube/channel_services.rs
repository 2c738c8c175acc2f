//! Each KafkaChannel's Service, which gives it the reference's address.

use kube::{
    api::{Api, PostParams},
    Client,
};
use serde_json::json;

use super::api::{absent_or, kind};
use crate::resources::Resources;

/// Each channel is addressed by the Host `<name>-kn-channel.<namespace>...`,
/// as in the reference implementation: a Service of that name, of type
/// ExternalName, points it at the ingress. The channel owns it, so
/// Kubernetes deletes it with the channel.
pub async fn ensure_channel_services(client: &Client, resources: &Resources, ingress_url: &str) {
    let ingress_host = ingress_url
        .split("://")
        .last()
        .unwrap_or_default()
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_owned();
    for channel in &resources.channels {
        let ns = channel.metadata.namespace();
        let name = format!("{}-kn-channel", channel.metadata.name);
        let api = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns);
        match absent_or(api.get(&name).await) {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, service = %name, "cannot read the channel's Service");
                continue;
            }
        }
        let (group, version, ..) = kind(channel.kind);
        let mut metadata = json!({
            "name": name,
            "namespace": ns,
            "labels": {"messaging.knative.dev/role": "kafka-channel", "app.kubernetes.io/managed-by": "ferry"},
        });
        if let Some(uid) = &channel.metadata.uid {
            metadata["ownerReferences"] = json!([{
                "apiVersion": format!("{group}/{version}"), "kind": channel.kind,
                "name": channel.metadata.name, "uid": uid, "controller": true, "blockOwnerDeletion": true,
            }]);
        }
        let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {"type": "ExternalName", "externalName": ingress_host},
        }))
        .expect("a valid Service");
        match api.create(&PostParams::default(), &service).await {
            Ok(_) => tracing::info!(namespace = %ns, service = %name, "channel Service created"),
            Err(error) => {
                tracing::warn!(%error, service = %name, "cannot create the channel's Service")
            }
        }
    }
}
