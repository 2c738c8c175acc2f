//! The control plane as an operator meets it: one unreachable Kafka cluster
//! beside a live one stalls nothing, standalone serves what its folder
//! declares now (not the previous run's contract), and `ferry controller`
//! has an admin port with metrics and probes, as every manifest expects.

use std::time::{Duration, Instant};

use ferry_harness::{
    bootstrap, eventually, free_port, http,
    process::{write_resource, FerryProcess, Standalone},
    send_event,
    subscriber::Subscriber,
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);
/// What issue 17 asks of an edit beside an unreachable cluster.
const EDIT_APPLIES: Duration = Duration::from_secs(2);

fn broker_yaml(ns: &str, name: &str, config: Option<&str>) -> String {
    let spec = config
        .map(|c| {
            format!("spec:\n  config:\n    apiVersion: v1\n    kind: ConfigMap\n    name: {c}\n")
        })
        .unwrap_or_default();
    format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  namespace: {ns}\n{spec}")
}

fn trigger_yaml(ns: &str, name: &str, ty: &str, url: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  broker: live\n  \
         filter:\n    attributes:\n      type: {ty}\n  subscriber:\n    uri: {url}\n"
    )
}

/// A port nothing listens on: connections are refused at once, and
/// librdkafka keeps retrying until the admin call times out.
fn dead_cluster() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[tokio::test]
async fn an_unreachable_cluster_stalls_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ns = unique("ns");
    let sub = Subscriber::accepting().await;
    write_resource(
        dir.path(),
        "far-config.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: far\n  namespace: {ns}\ndata:\n  bootstrap.servers: {}\n  default.topic.partitions: \"1\"\n  default.topic.replication.factor: \"1\"\n",
            dead_cluster()
        ),
    );
    write_resource(
        dir.path(),
        "far.yaml",
        &broker_yaml(&ns, "far", Some("far")),
    );
    write_resource(dir.path(), "live.yaml", &broker_yaml(&ns, "live", None));
    write_resource(
        dir.path(),
        "t1.yaml",
        &trigger_yaml(&ns, "t1", "a", &sub.url()),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;

    // The live broker is served while the far one's topic is still being
    // asked for; the far one says why it is not ready.
    let live = ferry.wait_for_status("Broker", "live", "True").await;
    let address = live["address"].as_str().unwrap().to_owned();
    let far = ferry.wait_for_status("Broker", "far", "False").await;
    assert_eq!(far["reason"], "TopicNotReady", "{far}");
    ferry.wait_for_status("Trigger", "t1", "True").await;
    ferry.ready().await;
    let client = http::client();
    send_event(&client, &address, "first", "a", &[]).await;
    sub.wait_for_ids(&["first".into()], WAIT).await;

    // Taking the far broker away leaves a deletion on the dead cluster
    // pending; an edit of the live broker's trigger applies meanwhile.
    std::fs::remove_file(dir.path().join("far.yaml")).unwrap();
    eventually("the far broker gone from /resources", WAIT, || {
        let ferry = &ferry;
        async move {
            let all = ferry.resources().await;
            (!all.is_empty() && !all.iter().any(|r| r["name"] == "far")).then_some(())
        }
    })
    .await;
    for round in 0..3 {
        let ty = format!("edit-{round}");
        let written = Instant::now();
        write_resource(
            dir.path(),
            "t1.yaml",
            &trigger_yaml(&ns, "t1", &ty, &sub.url()),
        );
        let contract = state.path().join("contract.json");
        eventually(
            &format!("edit {round} in the contract within {EDIT_APPLIES:?}"),
            EDIT_APPLIES,
            || {
                let published = std::fs::read_to_string(&contract).unwrap_or_default();
                let ty = ty.clone();
                async move { published.contains(&format!("\"{ty}\"")).then_some(()) }
            },
        )
        .await;
        eprintln!("edit {round} applied after {:?}", written.elapsed());
    }
    // And the edit reaches the data plane: the last filter is the one used.
    let mut n = 0;
    eventually("the edited filter in force", WAIT, || {
        n += 1;
        let (client, address, sub) = (client.clone(), address.clone(), &sub);
        async move {
            send_event(&client, &address, &format!("e-{n}"), "edit-2", &[]).await;
            sub.received()
                .iter()
                .any(|r| r.id().starts_with("e-"))
                .then_some(())
        }
    })
    .await;

    // A trigger deleted beside the dead cluster stops getting events.
    std::fs::remove_file(dir.path().join("t1.yaml")).unwrap();
    ferry.wait_for_status("Broker", "live", "True").await;
    eventually("t1 removed", EDIT_APPLIES, || {
        let ferry = &ferry;
        async move { (!ferry.resources().await.iter().any(|r| r["name"] == "t1")).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn standalone_never_serves_the_previous_runs_contract() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ns = unique("ns");
    // What a previous run against another cluster left behind.
    let ghost = ferry_proto::Contract {
        generation: 7,
        resources: vec![ferry_harness::broker(
            &ns,
            "ghost",
            &format!("knative-broker-{ns}-ghost"),
            &dead_cluster(),
        )],
        ..Default::default()
    };
    std::fs::write(
        state.path().join("contract.json"),
        serde_json::to_vec(&ghost).unwrap(),
    )
    .unwrap();
    write_resource(dir.path(), "live.yaml", &broker_yaml(&ns, "live", None));
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    let client = http::client();

    // From its first moment the receiver does not know the ghost.
    let ghost_url = format!("{}/{ns}/ghost", ferry.ingress);
    let event = [
        ("ce-specversion", "1.0"),
        ("ce-id", "g"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ];
    let answer = http::post(&client, &ghost_url, &event, "").await;
    assert_eq!(answer.status, 404, "{}", answer.body);

    let live = ferry.wait_for_status("Broker", "live", "True").await;
    ferry.ready().await;
    let answer = send_event(&client, live["address"].as_str().unwrap(), "l-1", "t", &[]).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let answer = http::post(&client, &ghost_url, &event, "").await;
    assert_eq!(answer.status, 404, "{}", answer.body);

    let published =
        ferry_common::contract::read(&state.path().join("contract.json")).expect("a contract");
    assert!(published.generation > 7, "the generation keeps growing");
    assert!(
        published
            .resources
            .iter()
            .all(|r| !r.topics.iter().any(|t| t.ends_with("-ghost"))),
        "{published:?}"
    );
    assert!(
        state.path().join("contract.previous.json").exists(),
        "the previous contract is kept for clean-up"
    );
}

#[tokio::test]
async fn the_controller_serves_metrics_and_probes() {
    let dir = tempfile::tempdir().unwrap();
    let contract = tempfile::tempdir().unwrap();
    let ns = unique("ns");
    write_resource(dir.path(), "live.yaml", &broker_yaml(&ns, "live", None));
    let admin = format!("127.0.0.1:{}", free_port());
    let contract_path = contract.path().join("contract.json");
    let _controller = FerryProcess::spawn(
        FERRY,
        &[
            "controller",
            "--resources",
            dir.path().to_str().unwrap(),
            "--contract",
            contract_path.to_str().unwrap(),
            "--bootstrap-servers",
            &bootstrap(),
            "--default-replication-factor",
            "1",
            "--default-partitions",
            "1",
            "--resync-ms",
            "200",
            "--admin",
            &admin,
        ],
        &[],
    );
    let client = http::client();
    // `None` until the port listens.
    let get = |path: &str| {
        let (client, url) = (client.clone(), format!("http://{admin}{path}"));
        async move {
            http::try_request(&client, ::http::Method::GET, &url, &[], "")
                .await
                .ok()
        }
    };
    eventually("/healthz", WAIT, || async {
        (get("/healthz").await?.status == 200).then_some(())
    })
    .await;
    eventually("/readyz", WAIT, || async {
        (get("/readyz").await?.status == 200).then_some(())
    })
    .await;
    let metrics = eventually("the broker counted Ready", WAIT, || async {
        let body = get("/metrics").await?.body;
        body.contains("ferry_controller_resources{kind=\"Broker\",ready=\"True\"} 1")
            .then_some(body)
    })
    .await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(value("ferry_controller_reconciles_total ") >= 1.0);
    assert_eq!(value("ferry_controller_leader "), 1.0);
    assert!(value("ferry_controller_reconcile_duration_seconds_count ") >= 1.0);
}

/// Every Deployment in `deploy/` has liveness and readiness probes.
#[test]
fn every_deployment_has_probes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base");
    let mut deployments = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in text.split("\n---") {
            if !document.contains("kind: Deployment") {
                continue;
            }
            deployments += 1;
            for probe in ["readinessProbe", "livenessProbe"] {
                assert!(
                    document.contains(probe),
                    "{} has no {probe}",
                    path.display()
                );
            }
        }
    }
    assert_eq!(deployments, 3, "controller, receiver, dispatcher");
}

/// deploy/ingress routes a broker's path on a public host to the
/// receiver's Service, by a port that Service has, and tells the
/// controller the public URL the broker then advertises.
#[test]
fn the_ingress_overlay_points_at_the_receivers_service() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let documents = |file: &str| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(deploy.join(file)).unwrap();
        text.split("\n---")
            .map(|d| serde_yaml_ng::from_str::<serde_json::Value>(d).unwrap())
            .filter(|d| !d.is_null())
            .collect()
    };
    let ingress = &documents("ingress/ingress.yaml")[0];
    assert_eq!(ingress["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(ingress["kind"], "Ingress");
    let path = &ingress["spec"]["rules"][0]["http"]["paths"][0];
    let namespace_and_broker = path["path"].as_str().unwrap();
    assert_eq!(
        namespace_and_broker.split('/').count(),
        3,
        "/<namespace>/<broker>"
    );
    let backend = &path["backend"]["service"];
    let service = documents("base/receiver.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Service")
        .unwrap();
    assert_eq!(backend["name"], service["metadata"]["name"]);
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert!(
        ports.iter().any(|p| p["name"] == backend["port"]["name"]),
        "{ports:?}"
    );
    let kustomization = &documents("ingress/kustomization.yaml")[0];
    assert!(kustomization["resources"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("../base")));
    let patch = &documents("ingress/controller-public-url.yaml")[0];
    let env = &patch["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(env["name"], "FERRY_INGRESS_URL");
    let host = ingress["spec"]["rules"][0]["host"].as_str().unwrap();
    assert!(env["value"].as_str().unwrap().ends_with(host), "{env}");
}
