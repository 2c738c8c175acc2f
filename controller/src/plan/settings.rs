//! What a plan is made with: the controller's settings, Kafka's defaults,
//! and what Kafka last said about the topics.

use std::collections::BTreeMap;

use ferry_common::{credentials::SecretAuth, kafka::ClusterRef};

/// Kafka settings for brokers whose config names none, with the reference
/// implementation's keys when read from a ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaDefaults {
    pub bootstrap: String,
    pub partitions: i32,
    pub replication: i32,
    /// `default.topic.config.<key>`: topic configs such as retention.ms.
    pub topic_config: BTreeMap<String, String>,
    /// The Secret of the cluster's credentials (a broker config's
    /// `auth.secret.ref.name`).
    pub auth: Option<SecretAuth>,
}

impl KafkaDefaults {
    pub fn cluster(&self) -> ClusterRef {
        ClusterRef {
            bootstrap: self.bootstrap.clone(),
            auth: self.auth.clone(),
        }
    }

    /// The contract's `auth` for these settings.
    pub fn contract_auth(&self) -> ferry_proto::resource::Auth {
        match &self.auth {
            Some(auth) => auth.to_contract(),
            None => ferry_proto::resource::Auth::AbsentAuth(ferry_proto::Empty {}),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// The ingress's base URL; a broker's address is `<base>/<ns>/<name>`.
    pub ingress_url: String,
    pub defaults: KafkaDefaults,
    /// Whether brokers without a class annotation are Ferry's (true for a
    /// folder of resources; false next to other broker classes).
    pub claim_unannotated: bool,
    /// How channels are addressed: by the reference's Host header (in a
    /// cluster) or by a path under the ingress URL (standalone).
    pub channel_addresses: ChannelAddresses,
    /// Where a channel's subscribers come from.
    pub channel_subscribers: ChannelSubscribers,
    /// The Kubernetes API server ApiServerSources watch, when there is one.
    pub api_server: Option<String>,
    /// Whether Brokers and Channels make EventTypes of what they carry,
    /// unless their annotation says otherwise (Knative's
    /// `eventtype-auto-create` feature).
    pub eventtype_autocreate: bool,
    /// HTTPS at the ingress, when transport encryption is on.
    pub tls: Option<AddressTls>,
    /// Sender identity (`authentication-oidc`), and who may send to an
    /// addressable no EventPolicy names.
    pub oidc: Option<AuthorizationMode>,
}

impl Settings {
    /// These settings with what Knative's `config-features` says
    /// (`authentication-oidc`, `default-authorization-mode`,
    /// `transport-encryption`) over them.
    pub fn with_features(
        &self,
        features: &BTreeMap<String, String>,
    ) -> std::borrow::Cow<'_, Settings> {
        let feature = |name: &str| features.get(name).map(String::as_str);
        if feature("authentication-oidc").is_none() && feature("transport-encryption").is_none() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut settings = self.clone();
        match feature("authentication-oidc") {
            Some("enabled") => {
                settings.oidc = Some(
                    feature("default-authorization-mode")
                        .and_then(|m| m.parse().ok())
                        .unwrap_or_default(),
                )
            }
            Some(_) => settings.oidc = None,
            None => {}
        }
        match feature("transport-encryption") {
            Some(mode @ ("permissive" | "strict")) => {
                // Where HTTPS is: as the flags said, or the ingress on https.
                let base = self.tls.clone().unwrap_or_else(|| AddressTls {
                    url: self.ingress_url.replacen("http://", "https://", 1),
                    ca_certs: None,
                    strict: false,
                });
                settings.tls = Some(AddressTls {
                    strict: mode == "strict",
                    ..base
                });
            }
            Some(_) => settings.tls = None,
            None => {}
        }
        std::borrow::Cow::Owned(settings)
    }
}

/// Knative's `default-authorization-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthorizationMode {
    #[default]
    AllowSameNamespace,
    AllowAll,
    DenyAll,
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow-same-namespace" => Ok(AuthorizationMode::AllowSameNamespace),
            "allow-all" => Ok(AuthorizationMode::AllowAll),
            "deny-all" => Ok(AuthorizationMode::DenyAll),
            other => Err(format!(
                "authorization mode '{other}': allow-same-namespace, allow-all or deny-all"
            )),
        }
    }
}

/// What addresses say when the ingress serves HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressTls {
    /// The HTTPS ingress's base URL.
    pub url: String,
    /// The PEM CA certificates that verify it (`CACerts`).
    pub ca_certs: Option<String>,
    /// `strict`: only the HTTPS address is listed.
    pub strict: bool,
}

/// Who turns Subscriptions into a channel's subscribers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelSubscribers {
    /// Ferry reads Subscriptions itself and writes their statuses
    /// (standalone, or a cluster without Knative's core).
    #[default]
    Subscriptions,
    /// Knative's subscription controller writes them into each channel's
    /// `spec.subscribers` (the Subscribable duck type) and owns their
    /// statuses; Ferry reports `status.subscribers` on the channel, and
    /// leaves `messaging.knative.dev/v1` Channels to Knative's channel
    /// controller, which makes KafkaChannels of them.
    ChannelSpec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelAddresses {
    /// `http://<name>-kn-channel.<namespace>.svc.cluster.local`
    Host,
    /// `<ingress URL>/channels/<namespace>/<name>`
    Path,
}

/// How a topic is described while Kafka has not answered for it yet.
pub const PENDING: &str = "waiting for Kafka at";
/// How a topic that must exist and does not is described.
pub const MISSING: &str = "does not exist";
/// How Kafka work that failed for want of credentials begins.
pub const NO_CREDENTIALS: &str = "Kafka credentials unavailable:";

/// What the last attempts to make topics and consumer groups real
/// reported.
#[derive(Clone, Debug, Default)]
pub struct TopicHealth<'a> {
    /// (cluster, topic) → why it is not usable. By cluster too: resources
    /// on other clusters, or with other credentials, may use a topic of
    /// the same name.
    pub failed_topics: BTreeMap<(ClusterRef, String), String>,
    /// Which consumer groups have their start committed; `None` when that
    /// is not looked at (a plan on its own, as in the plan's tests).
    pub pins: Option<&'a super::group_starts::Pins>,
}

impl TopicHealth<'_> {
    /// Why a topic is not usable, if it is not.
    pub fn failed(&self, topic: &super::TopicSpec) -> Option<&String> {
        self.failed_topics
            .get(&(topic.cluster.clone(), topic.name.clone()))
    }
}
