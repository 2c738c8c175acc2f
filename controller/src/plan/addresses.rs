//! Where things are: a broker's and a channel's address, a Destination
//! resolved to a URL, and the contract's reference to an object.

use ferry_proto::Reference;

use super::{
    settings::{ChannelAddresses, Settings},
    status::{Address, Status},
};
use crate::resources::{Destination, Metadata};

/// A broker's address: `<ingress URL>/<namespace>/<name>`.
pub fn broker(settings: &Settings, namespace: &str, name: &str) -> String {
    format!(
        "{}/{namespace}/{name}",
        settings.ingress_url.trim_end_matches('/')
    )
}

/// A KafkaSink's address: at `/<namespace>/<name>` on the ingress, as the
/// reference's sink receiver serves it.
pub fn kafka_sink(settings: &Settings, namespace: &str, name: &str) -> String {
    broker(settings, namespace, name)
}

/// The reference implementation's address for a Kafka channel.
pub fn channel_host(namespace: &str, name: &str) -> String {
    format!("{name}-kn-channel.{namespace}.svc.cluster.local")
}

/// A path under the ingress that cannot collide with a broker's
/// `/<namespace>/<name>`.
pub fn channel_path(namespace: &str, name: &str) -> String {
    format!("/channels/{namespace}/{name}")
}

/// A channel's address: by its Host in a cluster, by its path standalone.
pub fn channel(settings: &Settings, namespace: &str, name: &str) -> String {
    match settings.channel_addresses {
        ChannelAddresses::Host => format!("http://{}", channel_host(namespace, name)),
        ChannelAddresses::Path => format!(
            "{}{}",
            settings.ingress_url.trim_end_matches('/'),
            channel_path(namespace, name)
        ),
    }
}

/// Sets an addressable's address from its HTTP URL: that alone, or with
/// HTTPS on, the HTTPS URL first with its CA certificates, then (unless
/// strict) the HTTP one, as Knative's addressables list them.
pub fn set_address(status: &mut Status, settings: &Settings, http: String) {
    let Some(tls) = &settings.tls else {
        status.address = Some(http);
        return;
    };
    let base = settings.ingress_url.trim_end_matches('/');
    let https = match http.strip_prefix(base) {
        Some(rest) => format!("{}{rest}", tls.url.trim_end_matches('/')),
        // A channel's Service: the same host, on HTTPS.
        None => http.replacen("http://", "https://", 1),
    };
    let mut addresses = vec![Address {
        name: "https".into(),
        url: https.clone(),
        ca_certs: tls.ca_certs.clone(),
        audience: None,
    }];
    if !tls.strict {
        addresses.push(Address {
            name: "http".into(),
            url: http,
            ca_certs: None,
            audience: None,
        });
    }
    status.address = Some(https);
    status.addresses = addresses;
}

/// The contract's reference to an `eventing.knative.dev/v1` object.
pub(super) fn reference(metadata: &Metadata, kind: &str) -> Reference {
    reference_in(metadata, kind, "eventing.knative.dev/v1")
}

/// The contract's reference to an object of any group and version.
pub(super) fn reference_in(metadata: &Metadata, kind: &str, group_version: &str) -> Reference {
    Reference {
        uuid: metadata.uid(kind),
        namespace: metadata.namespace().to_owned(),
        name: metadata.name.clone(),
        kind: kind.to_owned(),
        group_version: group_version.to_owned(),
        ..Default::default()
    }
}

/// A Destination's URL: a Service (Kubernetes or Knative) by its cluster
/// DNS name, a Broker, a Channel or a flow by its address, or an absolute
/// http URI.
pub fn resolve(
    destination: &Destination,
    namespace: &str,
    settings: &Settings,
) -> Result<String, String> {
    let uri = destination.uri.as_deref().filter(|u| !u.is_empty());
    let Some(reference) = &destination.reference else {
        let uri = uri.ok_or("neither ref nor uri is set")?;
        return match uri.split_once("://") {
            Some(("http" | "https", rest)) if !rest.is_empty() => Ok(uri.to_owned()),
            Some((scheme, _)) => Err(format!(
                "uri '{uri}': scheme '{scheme}' is not supported (use http or https)"
            )),
            None => Err(format!("uri '{uri}' is not absolute")),
        };
    };
    let ns = reference.namespace.as_deref().unwrap_or(namespace);
    let base = match (reference.api_version.as_str(), reference.kind.as_str()) {
        ("v1", "Service") | ("serving.knative.dev/v1", "Service") => {
            format!("http://{}.{ns}.svc.cluster.local", reference.name)
        }
        ("eventing.knative.dev/v1", "Broker") => broker(settings, ns, &reference.name),
        ("messaging.knative.dev/v1beta1", "KafkaChannel")
        | ("messaging.knative.dev/v1", "Channel") => channel(settings, ns, &reference.name),
        ("eventing.knative.dev/v1alpha1", "KafkaSink") => kafka_sink(settings, ns, &reference.name),
        // A flow's address is its first channel's, as Knative's.
        ("flows.knative.dev/v1", "Sequence") => {
            channel(settings, ns, &super::flows::sequence_channel(&reference.name, 0))
        }
        ("flows.knative.dev/v1", "Parallel") => {
            channel(settings, ns, &super::flows::parallel_ingress(&reference.name))
        }
        (api, kind) => {
            return Err(format!(
                "cannot resolve a {kind} of {api}: Ferry resolves Services, Brokers, Channels, KafkaSinks, Sequences and Parallels"
            ))
        }
    };
    Ok(match uri {
        Some(path) if path.starts_with('/') => format!("{base}{path}"),
        Some(path) => format!("{base}/{path}"),
        None => base,
    })
}
