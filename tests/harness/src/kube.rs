//! Talking to the emulated Kubernetes API ([`KubeEmulator`]) as `kubectl`
//! would: create, read, patch and delete objects by URL path, and wait
//! for an object to be as a test wants it; and `ferry controller --kube`
//! pointed at it.

use std::time::Duration;

use serde_json::Value;

use crate::{
    bootstrap, eventually,
    http::{self, HttpClient},
    process::{FerryProcess, KubeEmulator},
};

/// How long the controller may take to act on an object.
pub const WAIT: Duration = Duration::from_secs(45);

/// The contract in the ConfigMap the data plane mounts, once it names
/// something.
pub async fn published_contract(k: &KubeApi) -> ferry_proto::Contract {
    let configmap = "/api/v1/namespaces/knative-eventing/configmaps/kafka-broker-brokers-triggers";
    eventually("the contract ConfigMap", WAIT, || async move {
        let data = k.get(configmap).await?["data"]["data"].as_str()?.to_owned();
        let contract: ferry_proto::Contract = serde_json::from_str(&data).ok()?;
        (!contract.resources.is_empty()).then_some(contract)
    })
    .await
}

/// The emulator's API, by paths such as `/api/v1/namespaces/ns/configmaps`.
pub struct KubeApi {
    pub client: HttpClient,
    pub url: String,
}

impl KubeApi {
    pub fn new(emulator: &KubeEmulator) -> Self {
        KubeApi {
            client: http::client(),
            url: emulator.url.clone(),
        }
    }

    async fn send(&self, method: ::http::Method, path: &str, content_type: &str, body: String) {
        let url = format!("{}{path}", self.url);
        let headers = [("content-type", content_type)];
        let answer = http::request(&self.client, method.clone(), &url, &headers, body).await;
        assert!(
            answer.status.is_success(),
            "{method} {url}: {} {}",
            answer.status,
            answer.body
        );
    }

    /// Creates `object` in the collection at `path`.
    pub async fn create(&self, path: &str, object: Value) {
        let body = object.to_string();
        self.send(::http::Method::POST, path, "application/json", body)
            .await;
    }

    /// Merge-patches the object at `path`.
    pub async fn patch(&self, path: &str, patch: Value) {
        let body = patch.to_string();
        self.send(
            ::http::Method::PATCH,
            path,
            "application/merge-patch+json",
            body,
        )
        .await;
    }

    pub async fn delete(&self, path: &str) {
        self.send(
            ::http::Method::DELETE,
            path,
            "application/json",
            String::new(),
        )
        .await;
    }

    /// Knative's `config-features` ConfigMap with these keys.
    pub async fn features(&self, data: Value) {
        self.create(
            "/api/v1/namespaces/knative-eventing/configmaps",
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "config-features", "namespace": "knative-eventing"},
                   "data": data}),
        )
        .await;
    }

    pub async fn get(&self, path: &str) -> Option<Value> {
        let url = format!("{}{path}", self.url);
        let answer = http::request(&self.client, ::http::Method::GET, &url, &[], "").await;
        answer
            .status
            .is_success()
            .then(|| serde_json::from_str(&answer.body).expect("JSON"))
    }

    /// Waits until the object at `path` is as `accept` wants it.
    /// At the deadline the test fails with the object's last status, so a
    /// failure says what the controller had reported.
    pub async fn wait_for(&self, path: &str, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            let object = self.get(path).await;
            match object {
                Some(object) if accept(&object) => return object,
                _ if tokio::time::Instant::now() >= until => panic!(
                    "timed out after {WAIT:?} waiting for {what}; last status: {}",
                    object.map_or_else(|| "(no object)".into(), |o| o["status"].to_string())
                ),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Waits until nothing is at `path`.
    pub async fn wait_gone(&self, path: &str, what: &str) {
        eventually(what, WAIT, || async move {
            self.get(path).await.is_none().then_some(())
        })
        .await
    }
}

/// `ferry controller --kube` against the emulator, as replica `pod`, with
/// `extra` arguments.
pub fn controller(
    ferry: &str,
    api: &KubeEmulator,
    state: &std::path::Path,
    pod: &str,
    extra: &[&str],
) -> FerryProcess {
    let kubeconfig = api.kubeconfig();
    let bootstrap = bootstrap();
    let mut args = vec![
        "controller",
        "--admin",
        "127.0.0.1:0",
        "--kube",
        "--namespace",
        "knative-eventing",
        "--state-dir",
        state.to_str().unwrap(),
        "--bootstrap-servers",
        &bootstrap,
        "--default-partitions",
        "2",
        "--default-replication-factor",
        "1",
        "--ingress-url",
        "http://ingress.test",
        "--resync-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    FerryProcess::spawn(
        ferry,
        &args,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAME", pod),
        ],
    )
}

/// Whether a status has the condition `ty` with `status`.
pub fn has_condition(status: &Value, ty: &str, value: &str) -> bool {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == value)
}
