//! The harness Ferry's end-to-end suite runs on.
//!
//! Kafka is real: the cluster named by `KAFKA_BOOTSTRAP_SERVERS` (Tansu
//! started by `scripts/test`, or Redpanda, Apache Kafka, Strimzi...), with a
//! topic per test so tests run in parallel. Tests that stop Kafka start a
//! private [`Tansu`] of their own. Components run in-process on
//! `127.0.0.1:0`.

pub mod certs;
pub mod http;
pub mod kafka;
pub mod kube;
pub mod metrics;
pub mod oidc;
pub mod process;
pub mod stack;
pub mod subscriber;
pub mod tansu;
pub mod tls;

use std::{future::Future, path::PathBuf, time::Duration};

use rand::distr::{Alphanumeric, SampleString};

pub use tansu::Tansu;

/// The shared cluster's bootstrap address.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| {
        panic!(
            "KAFKA_BOOTSTRAP_SERVERS is not set: run the suite with `scripts/test`, which starts Tansu, \
             or point it at a Kafka cluster"
        )
    })
}

/// A loopback port nothing listens on now (for a process told where to
/// listen).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A name no other test uses: `prefix-xxxxxxxx`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        Alphanumeric
            .sample_string(&mut rand::rng(), 10)
            .to_lowercase()
    )
}

/// Logs to the test's output when RUST_LOG is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Waits until `check` returns `Some`, trying again every few milliseconds,
/// and fails the test with `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A contract file in its own directory, replaced atomically on each write
/// as a control plane would.
pub struct ContractFile {
    dir: tempfile::TempDir,
}

impl ContractFile {
    pub fn new(contract: &ferry_proto::Contract) -> Self {
        let file = ContractFile {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        file.write(contract);
        file
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("contract.json")
    }

    pub fn write(&self, contract: &ferry_proto::Contract) {
        self.write_bytes(&serde_json::to_vec_pretty(contract).expect("contract serialises"));
    }

    /// Writes a contract document as it stands: protobuf JSON as another
    /// control plane writes it, unknown fields and all.
    pub fn write_json(&self, contract: &serde_json::Value) {
        self.write_bytes(&serde_json::to_vec_pretty(contract).expect("JSON serialises"));
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let tmp = self.dir.path().join(".contract.json.tmp");
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, self.path()).expect("rename");
    }
}

/// A broker resource as the control plane writes it.
pub fn broker(namespace: &str, name: &str, topic: &str, bootstrap: &str) -> ferry_proto::Resource {
    ferry_proto::Resource {
        uid: unique("uid"),
        topics: vec![topic.to_owned()],
        bootstrap_servers: bootstrap.to_owned(),
        ingress: Some(ferry_proto::Ingress {
            path: format!("/{namespace}/{name}"),
            ..Default::default()
        }),
        reference: Some(ferry_proto::Reference {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: "Broker".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Receiver settings for tests: loopback ports, a short produce bound.
pub fn receiver_config(contract: &ContractFile, bootstrap: &str) -> ferry_receiver::Config {
    ferry_receiver::Config {
        secrets: Default::default(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: "127.0.0.1:0".parse().expect("addr"),
        contract: contract.path(),
        contract_poll: Duration::from_secs(1),
        default_bootstrap: bootstrap.to_owned(),
        max_body_bytes: 64 * 1024,
        producer: ferry_common::kafka::ProducerSettings {
            timeout: Duration::from_secs(3),
            max_message_bytes: 64 * 1024,
            overrides: ferry_common::kafka::Overrides::load(None, std::env::vars())
                .expect("FERRY_RDKAFKA_* settings"),
        },
        metrics_event_type: true,
        event_types: None,
        tail: None,
        tls: None,
        oidc: None,
    }
}

/// A receiver running in this process until the returned guard drops.
pub struct TestReceiver {
    pub running: ferry_receiver::Running,
    shutdown: ferry_common::shutdown::Shutdown,
}

impl TestReceiver {
    pub async fn start(config: ferry_receiver::Config) -> Self {
        init_logging();
        let shutdown = ferry_common::shutdown::Shutdown::new();
        let running = ferry_receiver::start(config, shutdown.clone())
            .await
            .expect("receiver starts");
        TestReceiver { running, shutdown }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.ingress)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.admin)
    }

    /// Waits for `/readyz` to answer 200.
    pub async fn ready(&self) {
        wait_ready(&self.url("/readyz")).await;
    }
}

/// Waits for a readiness URL to answer 200.
pub async fn wait_ready(url: &str) {
    let client = http::client();
    eventually(url, Duration::from_secs(30), || {
        let (client, url) = (client.clone(), url.to_owned());
        async move {
            let answer = http::try_request(&client, ::http::Method::GET, &url, &[], "").await;
            answer
                .ok()
                .filter(|a| a.status == ::http::StatusCode::OK)
                .map(|_| ())
        }
    })
    .await;
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Dispatcher settings for tests: short group timeouts (Tansu answers a
/// first join after about half the session timeout), frequent commits.
pub fn dispatcher_config(contract: &ContractFile, bootstrap: &str) -> ferry_dispatcher::Config {
    let overrides = ferry_common::kafka::Overrides::load(None, std::env::vars())
        .expect("FERRY_RDKAFKA_* settings");
    ferry_dispatcher::Config {
        secrets: Default::default(),
        tokens: Default::default(),
        admin: "127.0.0.1:0".parse().expect("addr"),
        contract: contract.path(),
        contract_poll: Duration::from_secs(1),
        defaults: ferry_dispatcher::egress::Defaults {
            bootstrap: bootstrap.to_owned(),
            timeout: Duration::from_secs(10),
            retry_after_max: Duration::from_secs(5),
        },
        consumers: ferry_dispatcher::reader::Settings {
            consumer: ferry_common::kafka::ConsumerSettings {
                session_timeout: Duration::from_millis(6000),
                heartbeat_interval: Duration::from_millis(500),
                overrides: overrides.clone(),
            },
            max_in_flight: 100,
            commit_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(5),
            detach_after: Duration::from_millis(500),
            max_deliveries: 1000,
            lag_interval: Duration::from_millis(200),
        },
        producer: ferry_common::kafka::ProducerSettings {
            timeout: Duration::from_secs(5),
            max_message_bytes: 1024 * 1024,
            overrides,
        },
        metrics_event_type: true,
        event_types: None,
    }
}

/// A dispatcher running in this process until the guard drops.
pub struct TestDispatcher {
    pub running: Option<ferry_dispatcher::Running>,
    shutdown: ferry_common::shutdown::Shutdown,
}

impl TestDispatcher {
    pub async fn start(config: ferry_dispatcher::Config) -> Self {
        init_logging();
        let shutdown = ferry_common::shutdown::Shutdown::new();
        let running = ferry_dispatcher::start(config, shutdown.clone())
            .await
            .expect("dispatcher starts");
        TestDispatcher {
            running: Some(running),
            shutdown,
        }
    }

    /// Shuts down gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.join().await;
        }
    }
}

impl Drop for TestDispatcher {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A trigger as the control plane writes it: its own consumer group,
/// replies back to the broker.
pub fn trigger(namespace: &str, name: &str, destination: &str) -> ferry_proto::Egress {
    ferry_proto::Egress {
        uid: unique("trigger-uid"),
        consumer_group: unique(&format!("knative-trigger-{namespace}-{name}")),
        destination: destination.to_owned(),
        reply_strategy: Some(ferry_proto::egress::ReplyStrategy::ReplyToOriginalTopic(
            ferry_proto::Empty {},
        )),
        reference: Some(ferry_proto::Reference {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: "Trigger".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Posts a binary-mode JSON event from `source`; it must be accepted.
pub async fn post_event(client: &http::HttpClient, url: &str, id: &str, ty: &str, source: &str) {
    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", source),
        ("ce-type", ty),
        ("content-type", "application/json"),
    ];
    let answer = http::post(client, url, &headers, "{}".to_owned()).await;
    assert_eq!(
        answer.status,
        ::http::StatusCode::ACCEPTED,
        "posting {id}: {}",
        answer.body
    );
}

/// Posts a binary-mode event with these attributes (and `extra` headers).
pub async fn send_event(
    client: &http::HttpClient,
    url: &str,
    id: &str,
    ty: &str,
    extra: &[(&str, &str)],
) -> http::Answer {
    let mut headers = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/ferry/tests"),
        ("ce-type", ty),
    ];
    headers.extend_from_slice(extra);
    let answer = http::post(client, url, &headers, format!("{{\"id\":\"{id}\"}}")).await;
    assert_eq!(
        answer.status,
        ::http::StatusCode::ACCEPTED,
        "posting {id}: {}",
        answer.body
    );
    answer
}
