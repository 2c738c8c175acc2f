//! librdkafka settings: Ferry's typed defaults, plus an escape hatch for the
//! operator (a properties file and `FERRY_RDKAFKA_*` environment variables)
//! that refuses to override what Ferry's guarantees rest on.

use std::{collections::BTreeMap, path::Path, time::Duration};

use rdkafka::{client::Client, error::KafkaResult, ClientConfig, ClientContext};

use crate::credentials::{Credentials, SecretAuth};

/// Environment variables with this prefix set librdkafka properties:
/// `FERRY_RDKAFKA_LINGER_MS=1` sets `linger.ms=1`.
pub const ENV_PREFIX: &str = "FERRY_RDKAFKA_";

/// The consumer group where the dispatcher notes the last replay it did
/// of `group`'s positions (see the dispatcher's `positions`); deleted with
/// `group`.
pub fn replay_group(group: &str) -> String {
    format!("{group}.ferry-replay")
}

/// Properties Ferry sets from its own typed settings; overriding them would
/// break a guarantee (acks=all, idempotence) or disagree with a flag.
const OWNED: [&str; 9] = [
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "message.max.bytes",
    "enable.auto.commit",
    "auto.offset.reset",
];

/// How many partitions `topic` has, by a metadata request (which blocks:
/// callers on the async workers run it on the blocking pool); 0 when the
/// broker does not know the topic or reports an error for it.
pub fn partition_count<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<usize> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len()))
}

/// A Kafka cluster as clients reach it: its bootstrap servers, and the
/// credentials of the resource that names it. Resources on the same
/// servers with other credentials get clients of their own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cluster {
    pub bootstrap: String,
    pub credentials: Option<Credentials>,
}

// === impl Cluster ===

impl Cluster {
    /// A cluster reached without credentials of a resource's own.
    pub fn plain(bootstrap: impl Into<String>) -> Cluster {
        Cluster {
            bootstrap: bootstrap.into(),
            credentials: None,
        }
    }

    /// A client configuration for this cluster: `defaults`' settings on
    /// top of the servers, then the operator's overrides, then the
    /// resource's credentials, which are the most specific.
    pub fn config(
        &self,
        client_id: &str,
        overrides: &Overrides,
        defaults: impl FnOnce(&mut ClientConfig),
    ) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", client_id);
        defaults(&mut config);
        overrides.apply_to(&mut config);
        if let Some(c) = &self.credentials {
            c.apply_to(&mut config);
        }
        config
    }
}

impl std::fmt::Display for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.credentials {
            None => f.write_str(&self.bootstrap),
            Some(c) => write!(f, "{} ({})", self.bootstrap, c.protocol()),
        }
    }
}

/// A cluster as a resource names it: its servers, and the Secrets of its
/// credentials, read each time a client is made from it (so a changed
/// Secret is picked up).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterRef {
    pub bootstrap: String,
    pub auth: Option<SecretAuth>,
}

// === impl ClusterRef ===

impl ClusterRef {
    pub fn plain(bootstrap: impl Into<String>) -> ClusterRef {
        ClusterRef {
            bootstrap: bootstrap.into(),
            auth: None,
        }
    }

    /// The cluster of a contract resource.
    pub fn of(resource: &ferry_proto::Resource) -> ClusterRef {
        ClusterRef {
            bootstrap: resource.bootstrap_servers.clone(),
            auth: SecretAuth::from_contract(resource.auth.as_ref()),
        }
    }
}

impl std::fmt::Display for ClusterRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.auth {
            None => f.write_str(&self.bootstrap),
            Some(auth) => write!(
                f,
                "{} (Secret {})",
                self.bootstrap,
                auth.secrets().join(", ")
            ),
        }
    }
}

/// Why the operator's Kafka settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConfigError {
    /// The properties file could not be read.
    #[error("cannot read Kafka properties {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A line of the properties file is not `key=value`.
    #[error("{path}:{line}: expected 'key=value'")]
    Syntax { path: String, line: usize },
    /// librdkafka does not know a property or refuses its value.
    #[error("invalid Kafka setting: {0}")]
    Invalid(String),
    /// The operator tried to set a property Ferry owns.
    #[error("Kafka property '{0}' is set by Ferry itself and cannot be overridden (use Ferry's flag for it)")]
    Owned(String),
}

/// librdkafka properties the operator asked for, on top of Ferry's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides(BTreeMap<String, String>);

// === impl Overrides ===

impl Overrides {
    /// Reads the properties file (when given), then the environment, which
    /// wins.
    pub fn load(
        properties: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, KafkaConfigError> {
        let mut map = BTreeMap::new();
        if let Some(path) = properties {
            let text = std::fs::read_to_string(path).map_err(|source| KafkaConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| KafkaConfigError::Syntax {
                        path: path.display().to_string(),
                        line: i + 1,
                    })?;
                map.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                map.insert(key.to_ascii_lowercase().replace('_', "."), value);
            }
        }
        if let Some(owned) = map.keys().find(|k| OWNED.contains(&k.as_str())) {
            return Err(KafkaConfigError::Owned(owned.clone()));
        }
        let overrides = Overrides(map);
        // Let librdkafka check names and values now, not at the first
        // client, so a typo stops the process at start with its reason.
        let mut probe = ClientConfig::new();
        overrides.apply_to(&mut probe);
        probe
            .create_native_config()
            .map_err(|e| KafkaConfigError::Invalid(e.to_string()))?;
        Ok(overrides)
    }

    /// Applies the overrides over a client configuration.
    pub fn apply_to(&self, config: &mut ClientConfig) {
        for (k, v) in &self.0 {
            config.set(k, v);
        }
    }
}

/// Settings of the receiver's producers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerSettings {
    /// How long a write may take before the request fails with 503; librdkafka
    /// retries within it.
    pub timeout: Duration,
    /// The largest record value; the ingress body limit.
    pub max_message_bytes: usize,
    pub overrides: Overrides,
}

/// Room for headers and framing on top of the largest value.
const RECORD_OVERHEAD: usize = 64 * 1024;

impl ProducerSettings {
    /// The client configuration for one cluster. Defaults: an idempotent
    /// producer with acks=all (so a 202 means durably written), a short
    /// linger to batch concurrent requests without adding visible latency.
    pub fn client_config(&self, cluster: &Cluster) -> ClientConfig {
        cluster.config("ferry-receiver", &self.overrides, |config| {
            config
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "1")
                .set("socket.keepalive.enable", "true")
                .set(
                    "message.timeout.ms",
                    self.timeout.as_millis().max(1).to_string(),
                )
                .set(
                    "message.max.bytes",
                    (self.max_message_bytes + RECORD_OVERHEAD).to_string(),
                );
        })
    }
}

/// Settings of the dispatcher's consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// How long the group waits for a silent member; also bounds how long a
    /// new group's first join takes on some brokers.
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub overrides: Overrides,
}

impl ConsumerSettings {
    pub fn client_config(&self, cluster: &Cluster, group_id: &str) -> ClientConfig {
        cluster.config("ferry-dispatcher", &self.overrides, |config| {
            config
                .set("group.id", group_id)
                // Offsets are committed by Ferry once deliveries finish.
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // A position the broker calls out of range must not be skipped:
                // librdkafka's default jumps to the end, past events never
                // delivered (seen on Tansu, whose high watermark can trail its
                // last batch, right after a dispatcher restart). From the
                // start, each egress skips what is below its own position, so
                // the cost is reading, not deliveries.
                .set("auto.offset.reset", "earliest")
                .set(
                    "session.timeout.ms",
                    self.session_timeout.as_millis().to_string(),
                )
                .set(
                    "heartbeat.interval.ms",
                    self.heartbeat_interval.as_millis().to_string(),
                )
                .set("socket.keepalive.enable", "true")
                // librdkafka prefetches up to 64 MiB per consumer by default; an
                // egress holds at most its in-flight window, so a couple of MiB
                // keeps it busy (measured in BENCHMARKS.md, scenarios 3 and 4).
                .set("queued.max.messages.kbytes", QUEUED_KBYTES)
                .set("queued.min.messages", "1000")
                // ...and fetches again soon once it drained (default: 1 s).
                .set("fetch.queue.backoff.ms", "5");
        })
    }
}

impl ConsumerSettings {
    /// For requests about many groups' offsets (see `group_offsets`).
    pub fn admin_config(&self, cluster: &Cluster) -> ClientConfig {
        cluster.config("ferry-dispatcher", &self.overrides, |_| {})
    }
}

/// The prefetch bound of each consumer (KiB).
const QUEUED_KBYTES: &str = "2048";

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kafka.properties");
        std::fs::write(&file, "# comment\nlinger.ms = 7\ncompression.type=lz4\n").unwrap();
        let o = Overrides::load(
            Some(&file),
            env(&[("FERRY_RDKAFKA_LINGER_MS", "9"), ("PATH", "/bin")]),
        )
        .unwrap();
        let settings = ProducerSettings {
            timeout: Duration::from_secs(5),
            max_message_bytes: 1 << 20,
            overrides: o,
        };
        let config = settings.client_config(&Cluster::plain("127.0.0.1:9092"));
        assert_eq!(config.get("linger.ms"), Some("9"));
        assert_eq!(config.get("compression.type"), Some("lz4"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("message.timeout.ms"), Some("5000"));
        assert_eq!(
            config.get("message.max.bytes"),
            Some(((1 << 20) + RECORD_OVERHEAD).to_string().as_str())
        );
    }

    #[test]
    fn consumers_never_skip_ahead_of_a_position() {
        let settings = ConsumerSettings {
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            overrides: Overrides::default(),
        };
        let config = settings.client_config(&Cluster::plain("k:9092"), "g");
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn refuses_owned_properties_and_bad_lines() {
        let err = Overrides::load(None, env(&[("FERRY_RDKAFKA_AUTO_OFFSET_RESET", "latest")]))
            .unwrap_err();
        assert!(err.to_string().contains("'auto.offset.reset'"), "{err}");
        let err = Overrides::load(None, env(&[("FERRY_RDKAFKA_ACKS", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Kafka property 'acks' is set by Ferry itself and cannot be overridden (use Ferry's flag for it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.properties");
        std::fs::write(&file, "linger.ms\n").unwrap();
        assert!(matches!(
            Overrides::load(Some(&file), []),
            Err(KafkaConfigError::Syntax { line: 1, .. })
        ));
    }
}
